"""Operations: the daily schedule, asset checks, backup restore, Slack alerts and sensors.

Layers point down: automation imports the asset factory, sources and stores; none of those imports automation.
Modules are imported where they are used, so importing this package never pulls the sources in.
"""
