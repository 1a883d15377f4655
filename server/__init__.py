"""The domain: settings, the database and unit of work, services, actors, domain events and
the bus, serializers per audience. It imports neither rest/ nor realtime/."""
