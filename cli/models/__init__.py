"""Model directories and archives: the container contract per framework, packaging and images.

Also the scaffolds `init-model` writes and the inputs recorded with a version (metrics, baseline, git commit).
"""
