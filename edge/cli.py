"""The ``edge-inspect`` command: run the inspection daemon, or watch its verdicts.

Everything the daemon does can be set in the YAML config; the options here override single
values so a bench run needs no file at all (``edge-inspect --camera sim --bundle B --source D``)
and a service can keep one file while a technician tries another bundle. Overrides go through the
same validation as the file. Heavy imports (onnxruntime, OpenCV) happen only when the daemon runs,
so ``edge-inspect subscribe`` starts fast on any machine with pyzmq.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

EXIT_STARTUP = 2

# option name -> (dotted config key, is a filesystem path given relative to the working directory)
OVERRIDES: dict[str, tuple[str, bool]] = {
    "camera": ("camera.type", False),
    "bundle": ("bundle", True),
    "source": ("camera.source", True),
    "fps": ("camera.fps", False),
    "loop": ("camera.loop", False),
    "max_frames": ("camera.max_frames", False),
    "publish": ("publish.endpoint", False),
    "station": ("station", False),
    "send_map": ("publish.send_map", False),
    "send_image": ("publish.send_image", False),
    "wait_subscriber": ("publish.wait_subscriber_s", False),
    "threads": ("runtime.threads", False),
    "backend": ("runtime.backend", False),
    "hint": ("runtime.hint", False),
    "log_level": ("log_level", False),
}


def install_stop_handlers(stop: threading.Event, reload: threading.Event | None = None) -> None:
    """SIGINT and SIGTERM only set ``stop``, SIGHUP only sets ``reload``; the loops notice within their wait timeout."""

    def _handler(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    def _reload(_signum: int, _frame: object) -> None:
        if reload is not None:
            reload.set()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    if reload is not None:
        signal.signal(signal.SIGHUP, _reload)


def build_overrides(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Dotted-key overrides for the options the user actually gave, and the option name for each."""
    overrides: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for name, (key, is_path) in OVERRIDES.items():
        value = options.get(name)
        if value is None:
            continue
        if is_path:
            value = os.path.abspath(os.path.expanduser(str(value)))
        overrides[key] = value
        labels[key] = "--" + name.replace("_", "-")
    return overrides, labels


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config file (see configs/sim.yaml). Options below override its values.")
@click.option("--validate-config", is_flag=True,
              help="Make every check start-up makes (camera source, extra and producers, writable state and archive "
              "folders, key files, the state-directory lock, the bundle and its self-test), print the result and "
              "exit (0 = valid, 2 = not, with the line start-up would print).")
@click.option("--camera", metavar="TYPE", help="Camera source type (camera.type), e.g. 'sim' to replay image files.")
@click.option("--bundle", metavar="DIR", help="Model bundle folder with bundle.yaml (bundle).")
@click.option("--source", metavar="DIR_OR_GLOB",
              help="Images for the sim camera: a folder (searched recursively) or a quoted glob (camera.source).")
@click.option("--fps", type=click.FloatRange(min=0),
              help="Frames per second to grab; 0 = as fast as possible (camera.fps).")
@click.option("--loop/--no-loop", default=None, help="Replay the source forever / stop at its end (camera.loop).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames (camera.max_frames).")
@click.option("--publish", metavar="ENDPOINT",
              help="ZeroMQ endpoint to bind for verdicts, e.g. tcp://0.0.0.0:5556 (publish.endpoint).")
@click.option("--station", metavar="NAME", help="Station name; verdicts go out on topic verdict.NAME (station).")
@click.option("--send-map/--no-send-map", default=None,
              help="Append the anomaly map PNG to each verdict as a third frame (publish.send_map).")
@click.option("--send-image/--no-send-image", default=None,
              help="Append the frame as a JPEG to each verdict, for edge-inspect view (publish.send_image).")
@click.option("--wait-subscriber", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Before the first frame, wait up to SECONDS for a subscriber (publish.wait_subscriber_s).")
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads (runtime.threads).")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino"]),
              help="Inference engine; auto = the bundle's graph format decides (runtime.backend).")
@click.option("--hint", type=click.Choice(["latency", "throughput"]), help="OpenVINO performance hint (runtime.hint).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log verbosity (log_level); each verdict is one INFO line.")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, validate_config: bool, **options: Any) -> None:
    """Line-side visual inspection: grab frames, decide OK/NG with a model bundle, publish verdicts.

    Without a command, runs the inspection daemon until its source ends or it gets SIGTERM/SIGINT
    (exit 0; frames already grabbed are still published). SIGHUP reloads the config file and its
    bundle without closing the verdict socket (a bad bundle is refused and the old one keeps
    running). A config, bundle, source or port problem prints one error and exits 2; a camera lost
    past the reconnect budget exits 1.
    """
    if ctx.invoked_subcommand is not None:
        return
    from edge.daemon.config import ConfigError, load_config

    overrides, labels = build_overrides(options)
    try:
        config = load_config(config_path, overrides, labels)
    except ConfigError as exc:
        click.echo(f"edge-inspect: config error: {exc}", err=True)
        if config_path is None:
            click.echo("edge-inspect: give --config FILE, or the options in edge-inspect --help", err=True)
        ctx.exit(EXIT_STARTUP)
    from edge.ops.logs import setup_logging

    setup_logging(config.log_level)
    if validate_config:
        ctx.exit(_validate(config))
    from edge.daemon.supervisor import InspectionDaemon, StartupError
    from edge.extras import explain

    stop = threading.Event()
    daemon = InspectionDaemon(config, stop, reload_config=lambda: load_config(config_path, overrides, labels))
    install_stop_handlers(stop, daemon.reload_requested)
    try:
        code = daemon.run()
    except StartupError as exc:
        click.echo(f"edge-inspect: error: {exc}", err=True)
        ctx.exit(EXIT_STARTUP)
    except ModuleNotFoundError as exc:  # an extra's module imported somewhere no check foresaw
        missing = explain(exc, "this config")
        if missing is None:
            raise
        click.echo(f"edge-inspect: error: {missing}", err=True)
        ctx.exit(EXIT_STARTUP)
    ctx.exit(code)


def _validate(config: Any) -> int:
    """``--validate-config``: every check start-up makes (camera, folders, keys, lock, bundle and self-test)."""
    from edge.daemon.deadlines import stop_budget_s
    from edge.daemon.preflight import StartupError, validate

    try:
        bundle, _ = validate(config)
    except StartupError as exc:
        click.echo(f"edge-inspect: error: {exc}", err=True)
        return EXIT_STARTUP
    click.echo(f"config OK: station {config.station}, bundle {bundle.bundle_id}, camera {config.camera.type}, "
               f"publish {config.publish.endpoint}, overload {config.pipeline.overload}, control "
               f"{config.control.endpoint if config.control.enabled else 'off'}, metrics "
               f"{f'{config.metrics.host}:{config.metrics.port}' if config.metrics.enabled else 'off'}, archive "
               f"{config.archive.directory if config.archive.enabled else 'off'}, outputs "
               f"{', '.join(_enabled_outputs(config)) or 'none'}, stops within {stop_budget_s(config):.1f} s")
    return 0


def _enabled_outputs(config: Any) -> list[str]:
    """``plc (modbus server, opcua)``-style names of the enabled ``outputs:`` sections."""
    from pydantic import BaseModel

    names = []
    for name in type(config.outputs).model_fields:
        section = getattr(config.outputs, name)
        if getattr(section, "enabled", False):
            parts = [f"{key} {getattr(value, 'role', '')}".strip() for key, value in section
                     if isinstance(value, BaseModel)]
            names.append(f"{name} ({', '.join(parts)})" if parts else name)
    return names


@main.command()
@click.argument("endpoint")
@click.option("--count", type=click.IntRange(min=1), metavar="N",
              help="Exit 0 after N verdicts (default: run until Ctrl-C).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Exit 1 if no verdict arrives for S seconds.")
@click.option("--json", "as_json", is_flag=True,
              help="Print each verdict's JSON payload on one line instead of a summary line.")
@click.option("--station", metavar="NAME", help="Only verdicts from this station (default: all stations).")
@click.option("--server-key", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="For a CURVE-encrypted stream: the daemon's public key file (NAME.key).")
@click.option("--client-key", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="For a CURVE-encrypted stream: this client's secret key file (NAME.key_secret).")
@click.option("--until-stopped", is_flag=True,
              help="Exit 0 when the daemon publishes its stopped event (the last message of a run).")
@click.option("--save", "save_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write each verdict's JSON to DIR/STATION-SEQ.json, and the images sent with it beside it: "
              "the anomaly map (--send-map) as -map.png, the frame (publish.send_image) as -image.jpg.")
def subscribe(endpoint: str, count: int | None, timeout: float | None, as_json: bool, station: str | None,
              server_key: Path | None, client_key: Path | None, until_stopped: bool, save_dir: Path | None) -> None:
    """Connect to ENDPOINT (e.g. tcp://10.0.0.5:5556) and print verdicts as they arrive.

    Says on stderr once the connection is up and it is waiting; reports sequence gaps (lost
    verdicts) as they happen, and when its first verdict is not the run's first (it joined
    mid-stream), how many of that run it missed. A summary line (received, gaps, OK, NG,
    restart markers seen) goes to stderr at the end.
    """
    from edge.wire.subscriber import subscribe as run_subscriber

    stop = threading.Event()
    install_stop_handlers(stop)
    code = run_subscriber(endpoint, count=count, timeout_s=timeout, as_json=as_json, station=station, stop=stop,
                          server_key=server_key, client_key=client_key, until_stopped=until_stopped,
                          save_dir=save_dir)
    sys.exit(code)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The daemon's own config file (outputs.broker with run: bridge).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log verbosity (default: the config's log_level).")
def bridge(config_path: Path, log_level: str | None) -> None:
    """Send the daemon's broker outbox to MQTT/Kafka from a process of its own (outputs.broker.run: bridge).

    Reads the same config file as the daemon, sends what the daemon appended to its outbox and
    deletes what the broker acknowledged, until SIGTERM. Killing it loses nothing: the next start
    replays what was not acknowledged. A config problem prints one line and exits 2.
    """
    from edge.configfields import systemd_state_directory
    from edge.daemon.config import ConfigError, load_config
    from edge.ops.logs import setup_logging
    from edge.outputs.broker.bridge import BridgeError, run_bridge

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"edge-inspect bridge: config error: {exc}", err=True)
        sys.exit(EXIT_STARTUP)
    setup_logging(log_level.upper() if log_level else config.log_level)
    stop = threading.Event()
    install_stop_handlers(stop)
    state_dir = config.state_dir if config.state_dir is not None else systemd_state_directory()
    try:
        code = run_bridge(config.outputs.broker, config.station, state_dir, stop)
    except BridgeError as exc:
        click.echo(f"edge-inspect bridge: error: {exc}", err=True)
        sys.exit(EXIT_STARTUP)
    sys.exit(code)


@main.command()
@click.option("--mqtt", "mqtt_url", metavar="URL", help="Read from this MQTT broker: mqtt://HOST[:PORT] or mqtts://.")
@click.option("--kafka", "kafka_bootstrap", metavar="HOST:PORT", help="Read from this Kafka cluster instead.")
@click.option("--prefix", default="edge-inspect", show_default=True,
              help="The stations' outputs.broker.*.topic_prefix (MQTT: PREFIX/STATION/KIND; Kafka: PREFIX.KIND).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, metavar="S",
              help="Refresh the table every S seconds.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Exit 0 after S seconds, printing the table once more (default: until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per refresh instead of the table.")
@click.option("--username", help="MQTT user name.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), help="MQTT password file.")
@click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="CA certificate(s) for mqtts://.")
@click.option("--from-beginning/--from-now", default=True, show_default=True,
              help="Kafka: read the topics from their start, or only what arrives from now on.")
def fleet(**options: Any) -> None:
    """Every station's verdicts from the plant's broker, as one live table (parts, NG, yield, missing seq, ...).

    Verdicts are de-duplicated on (station, run_id, seq); "missing" counts seq gaps other than a
    restart's jump; "p95 ms" is the verdict's capture-to-publish latency, "delay95" publish to
    arrival here. MQTT also shows whether each station is online (its retained connection message
    and last will). A broker that cannot be reached prints one line and exits 2.
    """
    from edge.outputs.broker.fleet import run_fleet

    sys.exit(run_fleet(**options))


def _register_commands() -> None:
    """Command groups that live in their own modules (importing only click at this point)."""
    from edge.control.cli import ctl, keygen
    from edge.tools.bench import bench
    from edge.tools.camera_bench import camera_bench
    from edge.tools.plc_bench import plc_bench
    from edge.tools.soak import soak
    from edge.tools.view_bench import view_bench
    from edge.view.cli import view
    from edge.tools.outage import outage_bench
    from edge.tools.outbox_bench import outbox_bench
    from edge.outputs.plc.cli import plc_map
    from edge.wire.schema_files import schemas

    main.add_command(camera_bench, name="camera-bench")
    main.add_command(bench, name="bench")
    main.add_command(soak, name="soak")
    main.add_command(outage_bench, name="outage-bench")
    main.add_command(outbox_bench, name="outbox-bench")
    main.add_command(ctl, name="ctl")
    main.add_command(keygen, name="keygen")
    main.add_command(schemas, name="schemas")
    main.add_command(plc_map, name="plc-map")
    main.add_command(plc_bench, name="plc-bench")
    main.add_command(view, name="view")
    main.add_command(view_bench, name="view-bench")


_register_commands()
