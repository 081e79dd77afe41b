"""Rhizome jobs: the durable background job system of a personal knowledge library."""

__version__ = "0.1.0"
