"""Astralog: event-sourced log analytics with bring-your-own storage."""

__version__ = "0.1.0"
