"""An analyst's model repository (`mlinfra init-model-repo`): its CI workflow and files."""
