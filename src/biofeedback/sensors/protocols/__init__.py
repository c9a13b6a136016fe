"""The protocols the sensors speak, one module each, and ``PROTOCOLS``: their ``ProtocolSpec`` by name.

| protocol name | module | decoders, driver | device side (virtual sensor) |
| --- | --- | --- | --- |
| ``hrs`` | ``hrs.py`` | ``decode_heart_rate_measurement``, ``HrsDriver`` | ``virtual/hrs.py`` |
| ``polar-pmd`` | ``pmd.py`` | ``decode_pmd_*``, ``pmd_*_command``, ``PmdEcgDriver`` | ``virtual/polar_h10.py`` |
| ``open-emg`` | ``open_emg.py`` | ``decode_open_emg_*``, ``open_emg_*_command``, ``OpenEmgDriver`` | ``virtual/open_emg.py`` |
| ``ganglion`` | ``ganglion.py`` | ``decode_ganglion_packet``, ``GanglionSampleCounter``, ``GanglionDriver`` | ``virtual/ganglion.py`` |
| ``bitalino`` | ``bitalino.py`` | ``decode_bitalino_*``, ``BitalinoFrameReader``, ``BitalinoDriver`` | ``virtual/bitalino.py`` |
| ``polar-pmd-ppi`` | ``pmd.py`` | ``decode_pmd_ppi_frame``, ``PmdPpiDriver`` | ``virtual/polar_verity.py`` |

Each module's ``SPEC`` says what a device profile must give for the protocol (gatt table and roles,
streams, settings and their consistency rules); ``profiles`` validates from it and ``ble`` starts
its ``driver``. ``base.py`` holds what they share: ``DecodeError``, ``ProtocolSpec``, ``Driver``.
A new protocol is a new module here and one entry below.
"""

from __future__ import annotations

from biofeedback.sensors.protocols import bitalino, ganglion, hrs, open_emg, pmd
from biofeedback.sensors.protocols.base import ProtocolSpec

PROTOCOLS: dict[str, ProtocolSpec] = {spec.name: spec for spec in (hrs.SPEC, pmd.SPEC, open_emg.SPEC, ganglion.SPEC,
                                                              bitalino.SPEC, pmd.PPI_SPEC)}
"""Every protocol a profile may list, by name, in the order error messages name them."""
