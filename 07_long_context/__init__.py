"""Lesson package."""
