"""Wiring: settings, app factory, conversation engine, persistence, job queue, console, API and CLI."""
