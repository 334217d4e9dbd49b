"""One module per provider: its typed client and its create operation."""
