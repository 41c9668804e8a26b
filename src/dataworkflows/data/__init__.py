"""The data layer: typed methods by area over dataworkflows.db.Database. Only this package and db.py
spell query names."""
