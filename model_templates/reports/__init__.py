"""Report templates rendered to self-contained HTML (the drift report), autoescaped."""
