"""Pure clinical metrics: no I/O, no clock, no state. Definitions: ``DEFINITIONS.md`` in this folder.

Modules: ``oximetry`` (overnight SpO2), ``niv`` (ventilator nightly summary), ``spirometry``
(session values, GLI Global 2022), ``trends`` (slopes, projections, rolling statistics).
"""
