"""A bleak backend over bumble: the application's own bleak code talks to virtual GATT servers.

``VirtualRadio`` is an in-process radio: a ``bumble.link.LocalLink`` with one
``bumble.controller.Controller`` per device (our central, and each virtual peripheral).
``BumbleScanner`` and ``BumbleClient`` implement bleak's backend interfaces
(``BaseBleakScanner``, ``BaseBleakClient``) on the central, so that ``BleakScanner(backend=...)``
and ``BleakClient(backend=...)`` run the same scan, connect, discover, ``start_notify``,
control-point writes and disconnect callbacks as against a real adapter.

Like BlueZ, CoreBluetooth and WinRT, the client negotiates the largest ATT MTU on connect
(bumble truncates notifications to MTU-3, as a real stack does).
"""

from __future__ import annotations

import asyncio
import os
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bumble import core
from bumble.controller import Controller
from bumble.core import AdvertisingData as AD
from bumble.device import Device, Peer
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

REQUESTED_ATT_MTU = 517
"""The MTU desktop stacks ask for on connect; the peripheral answers with what it supports."""
CENTRAL_ADDRESS = "F0:F0:F0:F0:F0:F0"
LE_DATA_LENGTH = 251
"""Link-layer payload of the virtual controllers (LE Data Length Extension maximum)."""
CONNECT_TIMEOUT_S = 5.0

_PROPERTY_NAMES = {
    0x01: "broadcast",
    0x02: "read",
    0x04: "write-without-response",
    0x08: "write",
    0x10: "notify",
    0x20: "indicate",
    0x40: "authenticated-signed-writes",
    0x80: "extended-properties",
}


def _raised_in_bumble(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}bumble{os.sep}" in tb.tb_frame.f_code.co_filename


def drop_late_gatt_responses(loop: asyncio.AbstractEventLoop) -> None:
    """Keep bumble's "InvalidStateError: invalid state" out of the user's terminal.

    When a GATT request is cancelled (a sensor disconnects or the session stops while a read or write is on its
    way), bumble's client keeps the cancelled future as its pending response; the answer that still arrives sets
    its result, which raises in bumble's packet callback, and asyncio logs the traceback at ERROR. The answer
    had no one waiting for it, so nothing is lost. Every other exception goes to the handler that was there.
    Idempotent."""
    previous = loop.get_exception_handler()
    if getattr(previous, "drops_late_gatt_responses", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(exc, asyncio.InvalidStateError) and _raised_in_bumble(exc):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.drops_late_gatt_responses = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


def bumble_uuid_to_str(u: core.UUID) -> str:
    """Full lowercase 128-bit string form, as bleak uses."""
    return str(uuidlib.UUID(bytes=bytes(reversed(u.to_bytes(force_128=True)))))


class VirtualRadio:
    """An in-process BLE radio shared by our central and the virtual peripherals."""

    def __init__(self) -> None:
        self.link = LocalLink()
        self._central: Device | None = None
        self._central_lock = asyncio.Lock()
        self._scanners = 0
        self._scan_lock = asyncio.Lock()
        self.connect_lock = asyncio.Lock()
        """One LE connection can be pending at a time on a controller; connects queue here, as in BlueZ."""

    def new_device(self, name: str, address: str) -> Device:
        """A bumble device with its own controller on this radio's link."""
        controller = Controller(name, link=self.link, public_address=address)
        # Like any BLE 4.2+ controller with Data Length Extension: 251-byte LL payloads, so a
        # 247-byte-MTU notification is one or two link packets rather than ten 27-byte fragments.
        controller.le_acl_data_packet_length = LE_DATA_LENGTH
        return Device(name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller)))

    async def acquire_scan(self) -> Device:
        """Start scanning for one more scanner; like BlueZ, several scanners share one discovery."""
        device = await self.central()
        async with self._scan_lock:
            self._scanners += 1
            if not device.is_scanning:
                await device.start_scanning(filter_duplicates=False)
        return device

    async def release_scan(self) -> None:
        device = await self.central()
        async with self._scan_lock:
            self._scanners = max(0, self._scanners - 1)
            if self._scanners == 0 and device.is_scanning:
                await device.stop_scanning()

    async def central(self) -> Device:
        """The host's own adapter on this radio, powered on once."""
        async with self._central_lock:
            if self._central is None:
                device = self.new_device("biofeedback-host", CENTRAL_ADDRESS)
                await device.power_on()
                self._central = device
            return self._central


@dataclass(frozen=True)
class VirtualDeviceDetails:
    """``BLEDevice.details`` for a device seen on a ``VirtualRadio``."""

    radio: VirtualRadio
    address: str
    address_type: int = Address.PUBLIC_DEVICE_ADDRESS


def _advertisement(adv: Any) -> tuple[str | None, AdvertisementData]:
    data = adv.data
    name = data.get(AD.COMPLETE_LOCAL_NAME) or data.get(AD.SHORTENED_LOCAL_NAME)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    uuids: list[str] = []
    for kind in (
        AD.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AD.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AD.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        AD.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    ):
        for u in data.get(kind) or []:
            uuids.append(bumble_uuid_to_str(u))
    manufacturer: dict[int, bytes] = {}
    mdata = data.get(AD.MANUFACTURER_SPECIFIC_DATA)
    if mdata:
        company, payload = mdata
        manufacturer[company] = bytes(payload)
    tx_power = data.get(AD.TX_POWER_LEVEL)
    return name, AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer,
        service_data={},
        service_uuids=uuids,
        tx_power=tx_power,
        rssi=adv.rssi,
        platform_data=(adv,),
    )


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend on a ``VirtualRadio``; pass ``radio=`` to ``BleakScanner``."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        radio: VirtualRadio,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._radio = radio
        self._device: Device | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._device = await self._radio.central()
        self._device.on("advertisement", self._on_advertisement)
        await self._radio.acquire_scan()

    async def stop(self) -> None:
        if self._device is not None:
            self._device.remove_listener("advertisement", self._on_advertisement)
            self._device = None
            await self._radio.release_scan()

    def _on_advertisement(self, adv: Any) -> None:
        name, data = _advertisement(adv)
        address = str(adv.address).replace("/P", "")
        # Like the OS stacks, merge the scan response (name) with the advertisement (services).
        previous = self.seen_devices.get(address)
        if previous is not None:
            old = previous[1]
            name = name or old.local_name
            data = data._replace(
                local_name=name,
                service_uuids=sorted(set(data.service_uuids) | set(old.service_uuids)),
                manufacturer_data={**old.manufacturer_data, **data.manufacturer_data},
            )
        if not self.is_allowed_uuid(data.service_uuids):
            return
        device = self.create_or_update_device(
            address, address, name, VirtualDeviceDetails(self._radio, address, adv.address.address_type), data
        )
        self.call_detection_callbacks(device, data)


class BumbleClient(BaseBleakClient):
    """bleak client backend on a ``VirtualRadio``; the radio comes from the scanned ``BLEDevice``."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = CONNECT_TIMEOUT_S,
        radio: VirtualRadio | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        details = getattr(address_or_ble_device, "details", None)
        if radio is None and isinstance(details, VirtualDeviceDetails):
            radio = details.radio
        if radio is None:
            raise BleakError("BumbleClient needs a BLEDevice found by BumbleScanner, or radio=")
        self._radio = radio
        address_type = details.address_type if isinstance(details, VirtualDeviceDetails) else Address.PUBLIC_DEVICE_ADDRESS
        self._peer_address = Address(self.address, address_type)
        self._name = getattr(address_or_ble_device, "name", None) or self.address
        self._connection: Any = None
        self._peer: Peer | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        central = await self._radio.central()
        timeout = kwargs.get("timeout", self._timeout)
        try:
            async with self._radio.connect_lock:
                connection = await central.connect(self._peer_address, timeout=timeout)
        except (core.TimeoutError, asyncio.TimeoutError) as exc:
            raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} was not found") from exc
        except core.BaseBumbleError as exc:
            raise BleakError(f"connect to {self.address} failed: {exc}") from exc
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        try:
            peer = Peer(connection)
            await _gatt("MTU exchange", peer.request_mtu(REQUESTED_ATT_MTU))
            self.services = await _gatt("service discovery", self._discover(peer))
            self._peer = peer
        except BaseException:
            await self.disconnect()
            raise

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        await peer.discover_services()
        for service in peer.services:
            await service.discover_characteristics()
            bleak_service = BleakGATTService(service, service.handle, bumble_uuid_to_str(service.uuid))
            collection.add_service(bleak_service)
            for char in service.characteristics:
                await char.discover_descriptors()
                props = [n for bit, n in _PROPERTY_NAMES.items() if int(char.properties) & bit]
                bleak_char = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    bumble_uuid_to_str(char.uuid),
                    props,  # type: ignore[arg-type]
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                for desc in char.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, bumble_uuid_to_str(desc.type), bleak_char)
                    )
        return collection

    def _on_disconnection(self, reason: int) -> None:
        self._connection = None
        self._peer = None
        self.services = None
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.remove_listener("disconnection", self._on_disconnection)
            self._peer = None
            try:
                await connection.disconnect()
            except core.BaseBumbleError:
                pass

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("virtual sensors need no pairing")

    async def unpair(self) -> None:
        raise NotImplementedError("virtual sensors need no pairing")

    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
        return bytearray(await _gatt("read", self._require_peer().read_value(characteristic.obj)))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any) -> bytearray:
        return bytearray(await _gatt("read descriptor", self._require_peer().read_value(descriptor.handle)))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
        await _gatt("write", self._require_peer().write_value(characteristic.obj, bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        await _gatt("write descriptor", self._require_peer().write_value(descriptor.handle, bytes(data), with_response=True))

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any) -> None:
        await _gatt("subscribe", self._require_peer().subscribe(
            characteristic.obj, lambda value: callback(bytearray(value)), prefer_notify=True
        ))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        await _gatt("unsubscribe", self._require_peer().unsubscribe(characteristic.obj))


async def _gatt(what: str, awaitable: Any) -> Any:
    """Await a bumble GATT operation and raise what bleak's own backends raise.

    bumble cancels a pending request when the link drops (``CancelledError``); bleak callers expect a
    ``BleakError`` then, and a ``CancelledError`` only when their own task is being cancelled.
    """
    try:
        return await awaitable
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise BleakError(f"{what} failed: the device disconnected") from None
    except core.BaseBumbleError as exc:
        raise BleakError(f"{what} failed: {exc}") from exc
