"""Real CurveZMQ key pairs in a temporary folder, shared by the control, curve and CLI tests.

Three parties: the daemon (``server``), a client whose public key is in the allow-list
(``client``), and a ``stranger`` with a valid key pair that nobody allowed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from edge.control.curve import CurveServerConfig
from edge.control.keys import generate_keypair


@dataclass(frozen=True)
class CurveKeys:
    server_public: Path
    server_secret: Path
    client_public: Path
    client_secret: Path
    stranger_public: Path
    stranger_secret: Path
    allowed_clients: Path

    def server_config(self) -> CurveServerConfig:
        return CurveServerConfig(secret_key=self.server_secret, allowed_clients=self.allowed_clients)


def make_keys(root: Path) -> CurveKeys:
    allowed = root / "allowed_clients"
    allowed.mkdir()
    server = generate_keypair(root / "server", "line3")
    client = generate_keypair(root / "client", "mes-bridge")
    stranger = generate_keypair(root / "stranger", "laptop")
    shutil.copy(client[0], allowed)
    return CurveKeys(*server, *client, *stranger, allowed_clients=allowed)
