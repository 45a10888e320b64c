"""Archive storage: the put-once ObjectStore protocol with S3 and local-directory backends."""

from afterimage.storage.base import ObjectInfo, ObjectStore, join_key, open_store

__all__ = ["ObjectInfo", "ObjectStore", "join_key", "open_store"]
