"""A real Apache Spark standalone cluster on loopback, started by the tests from pip's pyspark.

    # the fixture is registered once, in conftest.py (one session-wide cluster per process)

    @pytest.mark.spark
    def test_x(spark_cluster):
        spark_cluster.master_url   # spark://127.0.0.1:<port>
        spark_cluster.session      # a SparkSession whose executors run on the two workers

`spark_cluster` (session scoped) starts one master and two workers (1 core, 1 GiB each) with
pyspark's own `bin/spark-class org.apache.spark.deploy.master.Master` / `...worker.Worker`
(SPARK_HOME is the pyspark package folder: pip's pyspark ships `bin/` and `jars/` but not
`sbin/start-master.sh`), each in its own process group, on free loopback ports, with
SPARK_LOCAL_IP=127.0.0.1, logs, work and local dirs under a temp folder. It waits until the
master's JSON status (`http://127.0.0.1:<ui>/json/`) lists both workers ALIVE, then builds a
SparkSession against the master (session time zone UTC, 4 shuffle partitions, driver on
127.0.0.1, its UI on a free loopback port for the REST API, Arrow on) and waits for its two
executors. Every JVM runs with a default time zone off UTC (JVM_TIME_ZONE), so a figure that leans
on the machine's zone instead of the session's fails here. Teardown, also after a failure: the
session, the driver's py4j JVM, the workers (and their executors, same process group), then the
master — SIGTERM to each process group, SIGKILL after a grace period. The daemons also get
PR_SET_PDEATHSIG, so they die with the test process even when it is killed outright.

Requirements: Java ≥ 17 (Spark 4.0's class files are major version 61; Java 17 and 21 are the
supported ones) found as $JAVA_HOME/bin/java or `java` on PATH, and pyspark importable. When either
is missing the tests skip locally and FAIL under CI (env var CI set), as the PostgreSQL fixture does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "1g"
EXECUTOR_MEMORY = "768m"  # fits a 1 GiB worker with room to spare
DAEMON_MEMORY = "256m"  # heap of the master and worker JVMs (Spark's default is 1g)
SHUFFLE_PARTITIONS = 4
START_TIMEOUT_S = 90.0
MIN_JAVA = 17
# short-lived JVMs on small data: the C1 compiler only and the serial GC halve the CPU time of the
# tests (cluster start included) on a 2-core machine; QA_TEST_SPARK_JVM_OPTS replaces them
JVM_FAST_START = os.environ.get("QA_TEST_SPARK_JVM_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
JVM_TIME_ZONE = "Asia/Kolkata"  # default zone of every JVM of the cluster; the session's is UTC

_DAEMON_LOG4J = """\
rootLogger.level = info
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n%ex
"""
# the driver runs inside pytest: warnings only, on its stderr, less the "task of very large size"
# one (createDataFrame from a local table ships the rows inside the tasks, which is fine in tests)
_DRIVER_LOG4J = _DAEMON_LOG4J.replace("rootLogger.level = info", "rootLogger.level = warn") + """\
logger.tsm.name = org.apache.spark.scheduler.TaskSetManager
logger.tsm.level = error
"""


def _unavailable(reason: str):
    """Skip locally, fail under CI: a CI run must exercise Spark, not skip it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} under CI: Spark tests must run, not skip", pytrace=False)
    pytest.skip(reason)


def find_java() -> str | None:
    """$JAVA_HOME/bin/java (what spark-class uses first), else `java` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def java_major(java: str) -> int | None:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major  # "1.8.0" → 8


def spark_home() -> Path:
    """pip's pyspark is a SPARK_HOME itself: bin/spark-class, jars/."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").exists() or not (home / "jars").is_dir():
        raise RuntimeError(f"{home} is not a Spark home (no bin/spark-class or jars/)")
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Daemon:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group (the daemon and its children: a worker's executors), then
        SIGKILL to whatever of the group is left, also when the daemon itself had already exited."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


@dataclass
class SparkCluster:
    """What the `spark_cluster` fixture yields."""

    master_url: str  # spark://127.0.0.1:<port>
    master_ui_url: str  # http://127.0.0.1:<port> (/json/ for the status)
    driver_ui_url: str  # http://127.0.0.1:<port> (/api/v1 for the application's executors)
    spark_home: Path
    base_dir: Path  # logs/, work/, local/, conf/ of every process
    session: object = None  # pyspark.sql.SparkSession
    startup_seconds: float = 0.0  # daemons started + both workers registered
    session_seconds: float = 0.0  # SparkSession created + both executors registered
    daemons: list[_Daemon] = field(default_factory=list)

    def status(self) -> dict:
        """The master's JSON status: workers, alive workers, applications."""
        with urllib.request.urlopen(f"{self.master_ui_url}/json/", timeout=5) as r:
            return json.load(r)

    def executors(self) -> list[dict]:
        """The application's live executors, the driver excluded, from the driver's REST API:
        id, hostPort, totalCores, totalTasks, completedTasks, ... (Spark's ExecutorSummary)."""
        app = self.session.sparkContext.applicationId
        url = f"{self.driver_ui_url}/api/v1/applications/{app}/executors"
        with urllib.request.urlopen(url, timeout=5) as r:
            return [e for e in json.load(r) if e["id"] != "driver" and e.get("isActive", True)]

    def completed_tasks(self) -> dict[str, int]:
        """executor id → tasks completed so far (to attribute a job's tasks to executors)."""
        return {e["id"]: e["completedTasks"] for e in self.executors()}

    def logs(self) -> str:
        return "\n".join(f"--- {d.name} ({d.log}) ---\n{d.tail()}" for d in self.daemons)


def _daemon_env(cluster: SparkCluster, java: str) -> dict:
    env = dict(os.environ)
    for k in list(env):  # a developer's own Spark settings must not leak into the test cluster
        if k.startswith(("SPARK_", "PYSPARK_")):
            del env[k]
    env.update({
        "SPARK_HOME": str(cluster.spark_home),
        "SPARK_CONF_DIR": str(cluster.base_dir / "conf-daemons"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(cluster.base_dir / "local"),
        "SPARK_LOG_DIR": str(cluster.base_dir / "logs"),
        "SPARK_PID_DIR": str(cluster.base_dir),
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_NO_DAEMONIZE": "1",
        "PYSPARK_PYTHON": sys.executable,
        "JAVA_HOME": str(Path(os.path.realpath(java)).parent.parent),
        # the JVMs deliberately run in a zone off UTC (+05:30): figures must depend on the session
        # time zone only (spark.sql.session.timeZone = UTC), never on the machine's
        "TZ": JVM_TIME_ZONE,
        "SPARK_DAEMON_JAVA_OPTS": f"-Duser.timezone={JVM_TIME_ZONE} {JVM_FAST_START}",
    })
    return env


def _start(cluster: SparkCluster, name: str, args: list[str], env: dict) -> _Daemon:
    log = cluster.base_dir / "logs" / f"{name}.log"
    fh = log.open("wb")
    proc = subprocess.Popen(
        [str(cluster.spark_home / "bin" / "spark-class"), *args],
        env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
        cwd=cluster.base_dir, start_new_session=True, preexec_fn=_die_with_parent,
    )
    fh.close()
    daemon = _Daemon(name, proc, log)
    cluster.daemons.append(daemon)
    return daemon


def _wait(cluster: SparkCluster, what: str, done, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for d in cluster.daemons:
            if d.proc.poll() is not None:
                raise RuntimeError(f"spark {d.name} exited ({d.proc.returncode}) while waiting for "
                                   f"{what}\n{cluster.logs()}")
        with contextlib.suppress(OSError, ValueError):
            if done():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{cluster.logs()}")
        time.sleep(0.25)


def start_cluster(base_dir: Path, java: str) -> SparkCluster:
    """Master + workers, waited on until both workers are ALIVE. The caller must `stop_cluster`."""
    home = spark_home()
    master_port, ui_port = free_port(), free_port()
    cluster = SparkCluster(f"spark://127.0.0.1:{master_port}", f"http://127.0.0.1:{ui_port}",
                           f"http://127.0.0.1:{free_port()}", home, base_dir)
    for sub in ("logs", "local", "work", "conf-daemons", "conf-driver", "warehouse"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    (base_dir / "conf-daemons" / "log4j2.properties").write_text(_DAEMON_LOG4J)
    (base_dir / "conf-driver" / "log4j2.properties").write_text(_DRIVER_LOG4J)
    env = _daemon_env(cluster, java)
    t = time.perf_counter()
    try:
        _launch_daemons(cluster, env, master_port, ui_port)
    except BaseException:
        stop_cluster(cluster)
        raise
    cluster.startup_seconds = time.perf_counter() - t
    return cluster


def _launch_daemons(cluster: SparkCluster, env: dict, master_port: int, ui_port: int) -> None:
    base_dir = cluster.base_dir
    _start(cluster, "master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(master_port), "--webui-port", str(ui_port)], env)
    _wait(cluster, "the master's JSON status", lambda: cluster.status().get("status") == "ALIVE")
    for i in range(WORKERS):
        _start(cluster, f"worker-{i + 1}", [
            "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", "0",
            "--webui-port", "0", "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY,
            "--work-dir", str(base_dir / "work" / f"worker-{i + 1}"), cluster.master_url], env)

    def workers_alive() -> bool:
        return sum(w.get("state") == "ALIVE" for w in cluster.status().get("workers", [])) >= WORKERS

    _wait(cluster, f"{WORKERS} workers to register with the master", workers_alive)


def start_session(cluster: SparkCluster, java: str, app_name: str = "qa-pipeline-tests"):
    """A SparkSession on the cluster; returns once both executors have registered with the driver."""
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is not None:
        raise RuntimeError("a SparkSession already exists in this process; the cluster fixture needs its own")
    t = time.perf_counter()
    # the driver JVM is launched by pyspark from this process's environment: set it for the launch only
    saved = {k: os.environ.get(k) for k in ("SPARK_CONF_DIR", "SPARK_LOCAL_IP", "SPARK_LOCAL_DIRS",
                                            "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "JAVA_HOME",
                                            "SPARK_HOME", "PYSPARK_SUBMIT_ARGS")}
    os.environ.update({
        "SPARK_CONF_DIR": str(cluster.base_dir / "conf-driver"),
        "SPARK_LOCAL_IP": "127.0.0.1",  # also the address the driver's UI binds to
        "SPARK_LOCAL_DIRS": str(cluster.base_dir / "local"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "JAVA_HOME": str(Path(os.path.realpath(java)).parent.parent),
        "SPARK_HOME": str(cluster.spark_home),
    })
    os.environ.pop("PYSPARK_SUBMIT_ARGS", None)
    try:
        session = (
            SparkSession.builder.master(cluster.master_url)
            .appName(app_name)
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.memory", "1g")
            .config("spark.executor.memory", EXECUTOR_MEMORY)
            .config("spark.executor.cores", str(WORKER_CORES))
            .config("spark.cores.max", str(WORKERS * WORKER_CORES))
            # the driver's UI on a free loopback port: its REST API says which executor ran what
            .config("spark.ui.enabled", "true")
            .config("spark.ui.port", cluster.driver_ui_url.rsplit(":", 1)[1])
            .config("spark.port.maxRetries", "32")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
            .config("spark.default.parallelism", str(SHUFFLE_PARTITIONS))
            .config("spark.sql.adaptive.enabled", "true")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
            .config("spark.sql.warehouse.dir", str(cluster.base_dir / "warehouse"))
            .config("spark.pyspark.python", sys.executable)
            .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
            .config("spark.driver.extraJavaOptions", f"-Duser.timezone={JVM_TIME_ZONE} {JVM_FAST_START} "
                    f"-Dderby.system.home={cluster.base_dir / 'local'}")
            .config("spark.executor.extraJavaOptions", f"-Duser.timezone={JVM_TIME_ZONE} {JVM_FAST_START}")
            .getOrCreate()
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    cluster.session = session
    # the port actually bound (Spark moves to the next one if the chosen port was taken meanwhile)
    cluster.driver_ui_url = session.sparkContext.uiWebUrl or cluster.driver_ui_url
    _wait(cluster, f"{WORKERS} executors to register with the driver",
          lambda: len(cluster.executors()) >= WORKERS)
    cluster.session_seconds = time.perf_counter() - t
    return session


def stop_cluster(cluster: SparkCluster) -> None:
    """Session, driver JVM, workers (with their executors), master. Never raises."""
    if cluster.session is not None:
        with contextlib.suppress(Exception):
            cluster.session.stop()
        cluster.session = None
    _stop_driver_jvm()
    for d in reversed(cluster.daemons):  # workers first, the master last
        with contextlib.suppress(Exception):
            d.stop()


def _stop_driver_jvm() -> None:
    """pyspark keeps its py4j JVM for the life of the process; end it so nothing outlives the fixture."""
    with contextlib.suppress(Exception):
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        if gateway is None:
            return
        proc = getattr(gateway, "proc", None)
        with contextlib.suppress(Exception):
            gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()  # the JVM exits when its stdin closes
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="session")
def spark_cluster():
    """A Spark standalone cluster (1 master, 2 workers of 1 core / 1 GiB) and a SparkSession on it.
    Skips without Java ≥ 17 or pyspark, except under CI where it fails."""
    java = find_java()
    if java is None:
        _unavailable("no Java (install default-jre-headless; .ci/run does under CI)")
    major = java_major(java)
    if major is None or major < MIN_JAVA:
        _unavailable(f"Spark 4 needs Java ≥ {MIN_JAVA}; {java} is {major}")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _unavailable("pyspark is not installed (ibis-framework[pyspark])")
    base = Path(tempfile.mkdtemp(prefix="qa-spark-"))
    cluster = None
    try:
        cluster = start_cluster(base, java)
        start_session(cluster, java)
        yield cluster
    finally:
        if cluster is not None:
            stop_cluster(cluster)
        if os.environ.get("QA_KEEP_SPARK_LOGS"):
            print(f"spark logs kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
