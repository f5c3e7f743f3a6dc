"""ANT+ and BLE cycling power decoders on recorded and spec-built bytes."""

from __future__ import annotations

import math

import pytest
from fakes import crank

from gateway.decode.ant_power import AntPowerDecoder, parse_page
from gateway.decode.ble_power import BlePowerDecoder, CrankCadence, parse_measurement
from gateway.errors import DecodeError


def page(*b: int) -> bytes:
    return bytes(b)


def test_crank_torque_90_rpm_at_30_nm_is_283_w() -> None:
    d = AntPowerDecoder()
    assert "power_w" not in d.feed(crank(0, 0, 0))  # the first page after pairing only sets the reference
    out = d.feed(crank(1, 1365, 960))
    assert out["power_w"] == pytest.approx(282.8, abs=0.1)
    assert out["cadence_rpm"] == pytest.approx(90.0, abs=0.05)
    assert out["torque_nm"] == pytest.approx(30.0)


def test_crank_torque_across_rollovers_and_missed_pages() -> None:
    d = AntPowerDecoder()
    d.feed(crank(254, 65000, 65000))
    out = d.feed(crank(257, 65000 + 3 * 1365, 65000 + 3 * 960))  # 3 events, all three counters wrap
    assert out["power_w"] == pytest.approx(282.8, abs=0.1) and out["cadence_rpm"] == pytest.approx(90.0, abs=0.05)


def test_power_only_averages_over_events_with_rollover() -> None:
    d = AntPowerDecoder()
    d.feed(page(0x10, 250, 0xB2, 88, 0xF0, 0xFF, 0x2C, 0x01))
    out = d.feed(page(0x10, 4, 0xB2, 90, 0x64, 0x03, 0x2D, 0x01))  # 10 events, 65520 -> 868: +884 W
    assert out["power_w"] == pytest.approx(88.4)
    assert out["cadence_rpm"] == 90 and out["instant_power_w"] == 301
    assert out["pedal_balance_pct"] == 50 and out["balance_is_right_pedal"] is True


def test_coasting_zeroes_power_and_cadence_after_repeated_event_counts() -> None:
    d = AntPowerDecoder()
    d.feed(crank(0, 0, 0))
    d.feed(crank(1, 1365, 960))
    outs = [d.feed(crank(1, 1365, 960)) for _ in range(4)]
    assert all("power_w" not in o for o in outs[:3])
    assert outs[3]["power_w"] == 0.0 and outs[3]["cadence_rpm"] == 0.0 and outs[3]["coasting"]
    p = AntPowerDecoder()
    p.feed(page(0x10, 1, 0xFF, 80, 100, 0, 200, 0))
    outs = [p.feed(page(0x10, 1, 0xFF, 80, 100, 0, 200, 0)) for _ in range(6)]
    assert "power_w" not in outs[4] and outs[5]["power_w"] == 0.0  # six repeats for power-only pages


def test_crank_torque_frequency_with_the_calibration_offset() -> None:
    d = AntPowerDecoder()
    first = d.feed(bytes.fromhex("20A801A167DA635A"))  # a real SRM pair
    assert first["slope_nm_per_hz"] == pytest.approx(41.7)
    second = d.feed(bytes.fromhex("20A901A16D7967C4"))
    assert second["cadence_rpm"] == pytest.approx(83.4, abs=0.05)
    assert second["torque_frequency_hz"] == pytest.approx(1570.5, abs=0.1)
    assert "power_w" not in second  # no offset known yet
    d.feed(page(0x01, 0x10, 0x01, 0xFF, 0xFF, 0xFF, 0x05, 0xDC))  # calibration: offset 1500 Hz, big-endian
    d.feed(bytes.fromhex("20A801A167DA635A"))
    third = d.feed(bytes.fromhex("20A901A16D7967C4"))
    torque = (1570.535 - 1500) / 41.7
    assert third["torque_nm"] == pytest.approx(torque, rel=1e-3)
    assert third["power_w"] == pytest.approx(torque * 83.39 * math.pi / 30, rel=1e-3)


def test_common_pages_manufacturer_product_battery() -> None:
    assert parse_page(page(0x50, 0xFF, 0xFF, 3, 0x20, 0x00, 0x39, 0x05)) | {} == {
        "page": 0x50, "name": "manufacturer", "hw_revision": 3, "manufacturer_id": 32, "model_number": 1337}
    product = parse_page(page(0x51, 0xFF, 0xFF, 42, 0x78, 0x56, 0x34, 0x12))
    assert product["serial_number"] == 0x12345678 and product["software_version"] == 4.2
    battery = parse_page(page(0x52, 0xFF, 0x00, 0, 0, 0, 0x80, 0x13))
    assert battery["battery_voltage_v"] == pytest.approx(3.5) and battery["battery_status"] == "new"
    # Byte 2 packs two fields: a meter with two batteries (bits 0-3 = 2) reporting on battery 1
    # (bits 4-7 = 1); 1000 ticks of 2 s operating time (byte 7 bit 7 set), 2.75 V, status "good".
    second = parse_page(page(0x52, 0xFF, 0x12, 0xE8, 0x03, 0x00, 0xC0, 0xA2))
    assert (second["battery_count"], second["battery_id"]) == (2, 1)
    assert second["battery_voltage_v"] == pytest.approx(2.75) and second["battery_status"] == "good"
    assert second["operating_time_s"] == 2000
    unused = parse_page(page(0x52, 0xFF, 0xFF, 0, 0, 0, 0x00, 0x3F))
    assert (unused["battery_count"], unused["battery_id"], unused["battery_voltage_v"]) == (None, None, None)


@pytest.mark.parametrize(("payload", "message", "offset"), [
    (bytes(5), "an ANT+ data page is 8 bytes, got 5", 5),
    (page(0x99, 0, 0, 0, 0, 0, 0, 0), "unknown data page 0x99", 0),
])
def test_bad_ant_pages_say_which_byte(payload: bytes, message: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        parse_page(payload)
    assert info.value.message == message and info.value.offset == offset


def test_ble_public_vectors() -> None:
    assert parse_measurement(bytes.fromhex("0000D204"))["instant_power_w"] == 1234
    full = parse_measurement(bytes.fromhex("3000D204FFFFFFFF033FFF07E70F"))
    assert (full["wheel_revolutions"], full["wheel_event_time_2048ths"]) == (4294967295, 16131)
    assert (full["crank_revolutions"], full["crank_event_time_1024ths"]) == (2047, 4071)
    assert parse_measurement(bytes.fromhex("0000F6FF"))["instant_power_w"] == -10  # signed


def test_ble_every_flag() -> None:
    payload = bytes.fromhex("FF1F") + (250).to_bytes(2, "little") + bytes([101]) + (320).to_bytes(2, "little")
    payload += (1000).to_bytes(4, "little") + (2048).to_bytes(2, "little")
    payload += (500).to_bytes(2, "little") + (1024).to_bytes(2, "little")
    payload += (400).to_bytes(2, "little", signed=True) + (-50).to_bytes(2, "little", signed=True)
    payload += (1600).to_bytes(2, "little", signed=True) + (-160).to_bytes(2, "little", signed=True)
    payload += (90 | 270 << 12).to_bytes(3, "little") + (10).to_bytes(2, "little") + (190).to_bytes(2, "little")
    payload += (1234).to_bytes(2, "little")
    m = parse_measurement(payload)
    assert m == {
        "flags": 0x1FFF, "instant_power_w": 250, "pedal_balance_pct": 50.5, "balance_reference": "left",
        "accumulated_torque_nm": 10.0, "torque_source": "crank", "wheel_revolutions": 1000,
        "wheel_event_time_2048ths": 2048, "crank_revolutions": 500, "crank_event_time_1024ths": 1024,
        "max_force_n": 400, "min_force_n": -50, "max_torque_nm": 50.0, "min_torque_nm": -5.0,
        "max_angle_deg": 90, "min_angle_deg": 270, "top_dead_spot_deg": 10, "bottom_dead_spot_deg": 190,
        "accumulated_energy_kj": 1234, "offset_compensation": True,
    }
    with pytest.raises(DecodeError) as info:
        parse_measurement(payload[:20])
    assert info.value.offset == 19 and "minimum force" in info.value.message


def test_ble_cadence_from_the_real_4iiii_pair_rollover_stall_and_timeout() -> None:
    d = BlePowerDecoder(CrankCadence(timeout_s=3.0))
    assert d.feed(bytes.fromhex("2C0000009F000C00E542"), 0.0)["cadence_rpm"] is None
    assert d.feed(bytes.fromhex("2C000000DF002B0039F6"), 1.0)["cadence_rpm"] == pytest.approx(41.49, abs=0.01)
    c = CrankCadence(timeout_s=3.0)
    c.feed(65534, 65000, 0.0)
    assert c.feed(1, 65000 + 2048 - 65536, 2.0) == pytest.approx(90.0)  # 3 revs in 2 s across both rollovers
    assert c.feed(1, 65000 + 2048 - 65536, 3.0) == pytest.approx(90.0)  # event time unchanged: no update
    assert c.feed(1, 65000 + 2048 - 65536, 5.5) == 0.0  # no revolution for 3.5 s: stopped


