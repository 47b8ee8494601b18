"""Operations: the daily schedule, retry/pool/freshness policies, asset checks, backup restore, Slack alerts.

Modules are imported where they are used (sources/base.py needs only `policies`, `checks` and `freshness`),
so importing this package never pulls the sources in.
"""
