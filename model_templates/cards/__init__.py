"""Model card templates ("Model Cards for Model Reporting"), as Markdown and as autoescaped HTML."""
