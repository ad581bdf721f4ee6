"""Pure OAuth protocol pieces: no I/O, no web framework, no storage.

Each module maps to one RFC or one rule so that a reader finds the code for a spec rule quickly.
"""
