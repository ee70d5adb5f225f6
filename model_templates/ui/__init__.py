"""The web view's pages (`mlinfra ui`): autoescaped HTML templates and their stylesheet."""
