"""The bootstrap stack as the CLI sees it: render offline, apply through Pulumi, configure GitHub to match."""
