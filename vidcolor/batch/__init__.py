"""Bulk archive jobs (``vidcolor batch``): inputs as small work items, and (coming) the Ray
workers, the resume ledger and film chunks that run them."""
