"""The web view (`mlinfra ui`): the registry, the stages and drift in a browser, or written out as a static site.

data.py reads through the library (the same calls as `status`, `versions`, `history`, `show`, `diff`, `card`) and
caches; views.py lays each page out for its template (model_templates/ui/); charts.py draws line charts as SVG
geometry; actions.py turns a confirmed form into the library call of `approve`, `promote` or `rollback`; app.py is
the ASGI app; static.py writes the same pages as files.
"""
