"""The chat platform's composition root and domain: settings, services, events, CLI."""
