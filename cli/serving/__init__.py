"""Local serving: the SageMaker container contract over HTTP and a model's handler loaded as containers load it.

Also the data capture a real endpoint writes, and fetching a registered version's artifact to serve it.
"""
