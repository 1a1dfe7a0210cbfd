"""The OPC UA output: the station as an OPC UA server, one object per station, updated per verdict.

SCADA systems and newer PLCs read a vision station over OPC UA rather than Modbus. The server
(asyncua, on the output's own event loop) has an object named after the station with the last
verdict's variables, the counters, the camera's state, the bundle id and a heartbeat; every
verdict writes them, ``LastVerdict`` (the whole result as one JSON string) last, so a client with
a data-change subscription on it gets one notification per part, with everything in it. The
server queues notifications per monitored item (asyncua caps the queue at 10,000), so a client that
asks for queue size 0 (or enough) misses none between two publishing cycles. In software-trigger
mode the object has a ``Trigger(part_id)`` method. The sender thread waits for each write (a
verdict is ``delivered`` once the variables hold it); a loop that cannot keep up fills the
bounded queue, which drops and counts as every output does.

Security: anonymous clients only when ``anonymous: true``; otherwise a user from ``users_file``
or a client certificate from ``trusted_certificates`` (which offers the Basic256Sha256 signed and
encrypted endpoint with the server's own certificate). The default endpoint is 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import math
from pathlib import Path
from typing import Any

from edge.outputs.base import (
    DeliveryError,
    OutboundMessage,
    OutputContext,
    OutputError,
    QueuedOutput,
)
from edge.outputs.plc.config import OpcuaConfig, check_users_file
from edge.outputs.plc.handshake import OK, result_from_verdict
from edge.outputs.plc.loop import LoopThread

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # asyncua builds the standard address space at init: seconds on a loaded box
WRITE_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 5.0
CERT_SUFFIXES = (".der", ".pem", ".crt")

# name -> (variant type name, initial value, description); the order is the write order, LastVerdict last.
VARIABLES: dict[str, tuple[str, Any, str]] = {
    "Result": ("Int32", 0, "1 OK, 2 NG, 3 error (not inspected: never OK); 0 before the first verdict."),
    "Verdict": ("String", "", "OK or NG, as in the ZeroMQ verdict."),
    "Score": ("Double", math.nan, "Raw anomaly score (NaN when not inspected)."),
    "NormalizedScore": ("Double", math.nan, "Score mapped to 0..1, 0.5 at the threshold (NaN when not inspected)."),
    "Seq": ("UInt64", 0, "The verdict's seq."),
    "PartId": ("UInt32", 0, "The part id the trigger carried (0 in free run)."),
    "Timestamp": ("DateTime", None, "When the frame was captured (UTC)."),
    "Regions": ("String", "[]", "NG regions as JSON: [{x, y, w, h, area, peak}]."),
    "Error": ("String", "", "Why the frame was not inspected; empty when it was."),
    "OkCount": ("UInt64", 0, "OK verdicts since start."),
    "NgCount": ("UInt64", 0, "NG verdicts since start (errors included)."),
    "ErrorCount": ("UInt64", 0, "Error verdicts since start."),
    "CameraUp": ("Boolean", True, "Whether the camera delivers frames."),
    "Ready": ("Boolean", True, "Camera up, not paused, daemon running."),
    "BundleId": ("String", "", "The bundle deciding now."),
    "Heartbeat": ("UInt32", 0, "+1 for every message the daemon publishes; stops when the daemon does."),
    "LastVerdict": ("String", "", ("The last result as one JSON object (seq, part_id, result, verdict, score, "
                                   "normalized_score, regions, t_capture, t_publish): subscribe to this for one "
                                   "notification per part.")),
}


def _pem_or_der(path: Path) -> tuple[bytes, str]:
    """A certificate or key file's bytes and its encoding told by its content (asyncua goes by the file name's
    extension, and its own certificate tool writes DER whatever the name says)."""
    data = path.read_bytes()
    return data, "pem" if b"-----BEGIN" in data[:200] else "der"


def _load_certificates(folder: Path) -> list[bytes]:
    """DER bytes of every certificate in ``folder``."""
    from asyncua.crypto import uacrypto
    from cryptography import x509

    ders = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in CERT_SUFFIXES:
            continue
        data = path.read_bytes()
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
        ders.append(uacrypto.der_from_x509(cert))
    return ders


class _UserManager:
    """Who may open a session: anonymous (if configured), a listed user, or a trusted certificate."""

    def __init__(self, anonymous: bool, users: dict[str, str], trusted: list[bytes]) -> None:
        self.anonymous = anonymous
        self.users = users
        self.trusted = trusted

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> Any:
        from asyncua.crypto import uacrypto
        from asyncua.crypto.permission_rules import User, UserRole

        if username is not None:
            expected = self.users.get(username)
            if expected is not None and hmac.compare_digest(expected.encode(), (password or "").encode()):
                return User(role=UserRole.User, name=username)
            return None
        # For an anonymous token asyncua passes the secure channel's peer certificate (or b""), so a
        # certificate that is not trusted still leaves the anonymous rule to decide.
        if certificate:
            der = certificate if isinstance(certificate, bytes) else uacrypto.der_from_x509(certificate)
            if der in self.trusted:
                return User(role=UserRole.User, name="certificate")
        return User(role=UserRole.User) if self.anonymous else None


class OpcuaOutput(QueuedOutput):
    """Serves the station's last verdict, counters and state over OPC UA (``outputs.plc.opcua``)."""

    name = "plc_opcua"

    def __init__(self, config: OpcuaConfig, context: OutputContext, queue_size: int = 256) -> None:
        super().__init__(queue_size=queue_size)
        self.config = config
        self.context = context
        self.loop = LoopThread("plc-opcua")
        self.server: Any = None
        self.nodes: dict[str, Any] = {}
        self.counts = {"OkCount": 0, "NgCount": 0, "ErrorCount": 0}
        self.heartbeat = 0
        self.camera_up = True
        self.paused = False
        self.on_demand = False

    # ------------------------------------------------------------------ QueuedOutput

    def open(self) -> None:
        try:
            status = self.context.handlers["status"]({}) if "status" in self.context.handlers else {}
        except Exception as exc:  # noqa: BLE001 - a status that cannot be read must not stop the start
            log.warning("OPC UA output: daemon status unavailable (%s)", exc)
            status = {}
        self.on_demand = status.get("acquisition") == "on_demand"
        self.camera_up = bool((status.get("camera") or {}).get("up", True))
        bundle_id = str((status.get("bundle") or {}).get("id") or "")
        self.loop.start()
        try:
            self.loop.run(self._start(bundle_id), START_TIMEOUT_S)
        except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
            self.loop.stop(STOP_TIMEOUT_S)
            raise OutputError(f"opcua server on {self.config.endpoint}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        self.connected = True
        log.info("PLC OPC UA server on %s (object %s%s)", self.config.endpoint, self.context.station,
                 ", method Trigger" if self.on_demand else "")

    def deliver(self, message: OutboundMessage) -> None:
        try:
            self.loop.run(self._apply(message.kind, message.payload), WRITE_TIMEOUT_S)
        except TimeoutError:
            raise DeliveryError("timeout", f"variables not written within {WRITE_TIMEOUT_S} s") from None

    def shutdown(self) -> None:
        if self.server is not None:
            try:
                self.loop.run(self.server.stop(), STOP_TIMEOUT_S)
            except (OSError, RuntimeError, TimeoutError) as exc:
                log.warning("OPC UA server did not stop cleanly: %s", exc)
        self.connected = False
        self.loop.stop(STOP_TIMEOUT_S)

    # ------------------------------------------------------------------ on the loop

    async def _start(self, bundle_id: str) -> None:
        from asyncua import Server, ua

        config = self.config
        users = check_users_file(config.users_file) if config.users_file is not None else {}
        trusted = _load_certificates(config.trusted_certificates) if config.trusted_certificates else []
        server = Server(user_manager=_UserManager(config.anonymous, users, trusted))  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(config.endpoint)
        server.set_server_name(f"edge-inspect {self.context.station}")
        policies = []
        if config.certificate is not None and config.private_key is not None:
            await server.load_certificate(*_pem_or_der(config.certificate))
            key, encoding = _pem_or_der(config.private_key)
            await server.load_private_key(key, None, encoding)
            policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
        if config.certificate is None or config.anonymous:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        tokens: list[type] = []
        if config.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        if users:
            tokens.append(ua.UserNameIdentityToken)
        if trusted:
            tokens.append(ua.X509IdentityToken)
        server.set_identity_tokens(tokens)
        idx = await server.register_namespace(config.namespace)
        station = await server.nodes.objects.add_object(idx, self.context.station)
        for name, (vtype, initial, description) in VARIABLES.items():
            if name == "BundleId":
                initial = bundle_id
            elif name == "CameraUp":
                initial = self.camera_up
            node = await station.add_variable(idx, name, initial, varianttype=getattr(ua.VariantType, vtype))
            await node.write_attribute(ua.AttributeIds.Description,
                                       ua.DataValue(ua.Variant(ua.LocalizedText(description))))
            self.nodes[name] = node
        if self.on_demand:
            await station.add_method(idx, "Trigger", self._trigger_method, [ua.VariantType.UInt32],
                                     [ua.VariantType.UInt32])
        await server.start()
        self.server = server

    async def _trigger_method(self, _parent: Any, part_id: Any) -> list[Any]:
        from asyncua import ua

        value = int(part_id.Value if isinstance(part_id, ua.Variant) else part_id)
        try:
            reply = self.context.handlers["trigger"]({"part_id": value})
        except Exception as exc:  # noqa: BLE001 - the refusal goes back to the client as a bad status
            log.warning("OPC UA Trigger(%d) refused: %s", value, exc)
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState) from None
        return [ua.Variant(int(reply.get("pending", 0)), ua.VariantType.UInt32)]

    async def _write(self, values: dict[str, Any]) -> None:
        from asyncua import ua

        for name, value in values.items():
            vtype = getattr(ua.VariantType, VARIABLES[name][0])
            await self.server.write_attribute_value(self.nodes[name].nodeid, ua.DataValue(ua.Variant(value, vtype)))

    async def _apply(self, kind: str, payload: dict[str, Any]) -> None:
        self.heartbeat = (self.heartbeat + 1) & 0xFFFFFFFF
        if kind == "verdict":
            await self._write(self._verdict_values(payload))
            return
        values: dict[str, Any] = {"Heartbeat": self.heartbeat}
        if kind == "heartbeat":
            self.camera_up, self.paused = payload.get("camera") == "up", payload.get("state") == "paused"
            values.update(CameraUp=self.camera_up, BundleId=str(payload.get("bundle_id") or ""))
        elif kind == "status":
            self.camera_up = payload.get("camera") == "up"
            values["CameraUp"] = self.camera_up
        values["Ready"] = self.camera_up and not self.paused and not (
            kind == "event" and payload.get("event") == "stopped")
        await self._write(values)

    def _verdict_values(self, verdict: dict[str, Any]) -> dict[str, Any]:
        result = result_from_verdict(verdict)
        self.counts["OkCount" if result.result == OK else "NgCount"] += 1
        if result.result == 3:
            self.counts["ErrorCount"] += 1
        score, normalized = verdict.get("score"), verdict.get("normalized_score")
        t_capture = dt.datetime.fromtimestamp(float(verdict["t_capture"]), tz=dt.UTC)
        summary = {"seq": verdict["seq"], "part_id": verdict.get("part_id"), "result": result.result,
                   "verdict": verdict["verdict"], "score": score, "normalized_score": normalized,
                   "regions": len(verdict.get("regions") or ()), "error": verdict.get("error"),
                   "t_capture": verdict["t_capture"], "t_publish": verdict.get("t_publish")}
        return {"Result": result.result, "Verdict": str(verdict["verdict"]),
                "Score": math.nan if score is None else float(score),
                "NormalizedScore": math.nan if normalized is None else float(normalized),
                "Seq": int(verdict["seq"]), "PartId": result.part_id, "Timestamp": t_capture,
                "Regions": json.dumps(verdict.get("regions") or []), "Error": str(verdict.get("error") or ""),
                **self.counts, "Heartbeat": self.heartbeat, "BundleId": str(verdict.get("bundle_id") or ""),
                "LastVerdict": json.dumps(summary)}

