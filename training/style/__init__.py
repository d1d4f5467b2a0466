"""Style training: the feed-forward networks (Johnson et al.) and layer visualisation (docs/style.md)."""
