"""Lifecycle operations: issue, rotate, suspend, resume, revoke, reconcile.

The only code that calls secret stores and issuers, and the only code that
changes a key's state; every change writes its audit event in the same
transaction.
"""
