"""biofeedback.session: the session core, with no terminal and no Qt, that every front end runs on.

``runner`` (``SessionRun``: acquire, process, record, drive the phases, close, outcome once), ``live`` (the one
live processor), ``phases`` (the one phase machine), ``recorder``, ``acquisition`` (sensors or a replay into a
hub), ``protocol`` and ``screening``, ``calibration``, ``keys`` (terminal keys stamped at their press).
Protocol TOMLs live in the top-level ``protocols/``, calibration TOMLs in ``calibration/`` (each folder has a
README).
"""
