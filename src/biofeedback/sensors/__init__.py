"""biofeedback.sensors: sources of blocks from sensors, real, virtual or recorded.

``source.py`` is the ``Source`` interface; ``ble.py`` the bleak source (scan, connect, reconnect),
``bumble_backend.py`` the bleak backend over a virtual bumble radio, ``replay.py`` a recorded
session played back; ``profiles.py`` loads and checks the device profiles in ``devices/*.toml``;
``timing.py`` holds every timing constant of the sources and the pure frame-placement rules.

Where each protocol lives: one module under ``protocols/`` per protocol, holding its decoders, its
driver (subscribe, start, place samples in time, detect gaps) and its ``SPEC`` (gatt roles, streams,
settings and their consistency rules): ``protocols/hrs.py`` (Bluetooth SIG Heart Rate Service),
``protocols/pmd.py`` (Polar PMD ECG), ``protocols/open_emg.py`` (our open-EMG profile,
``devices/open-emg.md``). ``protocols.PROTOCOLS`` maps each protocol name to its spec. The device
side of each protocol, written from the same specification but never with our decoders, is a
virtual sensor under ``virtual/``: ``virtual/hrs.py``, ``virtual/polar_h10.py`` (PMD ECG) and
``virtual/open_emg.py``, on the common part in ``virtual/peripherals.py``.
"""
