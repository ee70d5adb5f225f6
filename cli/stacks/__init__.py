"""The platform repository's stacks: the project, stack files and their edits, and local mode's scratch copy.

Also the offline render of a stack, its diff against another commit, the force-new rules and `mlinfra check`.
"""
