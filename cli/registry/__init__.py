"""The registry of model versions: its store on S3 and typed records.

Also the actions that write it (register, promote, approve, rollback, deployments) with their gates and audit
trail, and the read-only views over it (history, status, versions, cards).
"""
