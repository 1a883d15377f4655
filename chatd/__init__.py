"""The composition root: create_app(), the wiring of services and bus subscribers, and the
operator CLI (`chatd`). It is the only package that knows every part; nothing imports it."""
