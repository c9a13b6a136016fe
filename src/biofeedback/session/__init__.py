"""biofeedback.session: protocols (``protocol``), screening, the recorder, calibration, running and summarising sessions.

Protocol TOMLs live in the top-level ``protocols/``, calibration TOMLs in ``calibration/`` (each folder
has a README). ``commands`` adds the ``session``, ``calibrate``, ``export`` and ``sessions`` commands
to ``biofeedback.cli``.
"""
