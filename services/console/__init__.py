"""The web console: live view, events with snapshots, people, cameras, system."""
