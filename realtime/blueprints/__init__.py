"""REST blueprints, one module per concern."""
