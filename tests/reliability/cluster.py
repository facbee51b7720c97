"""Three Kafka brokers in KRaft mode (each broker + controller, one quorum of three) on loopback ports,
run from the same jars and shared broker settings (infra/kafka/broker.properties) as infra/stack.sh:
the shape of Kafka's own kafkatest replication test.

Every process is a Popen this object owns; `kill(node, sig)` signals one of them, `stop()` ends all.
"""

import base64
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from respmon.testing.privatestack import BROKER_PROPERTIES, CACHED_LIBS, free_port
from tests.reliability.stack import wait_for


class KafkaCluster:
    def __init__(self, size: int = 3, libs: Path = CACHED_LIBS) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="respmon-cluster-"))
        self.libs = libs
        self.nodes = list(range(1, size + 1))
        self.ports = {n: free_port() for n in self.nodes}
        self.controller_ports = {n: free_port() for n in self.nodes}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports.values())

    def _java(self, node: int) -> list[str]:
        return ["java", "-Xms128m", "-Xmx512m", f"-Dlog4j.configuration=file:{self.dir / f'log4j-{node}.properties'}",
                "-cp", f"{self.libs}/*"]

    def _configure(self, node: int) -> Path:
        voters = ",".join(f"{n}@127.0.0.1:{self.controller_ports[n]}" for n in self.nodes)
        data = self.dir / f"data-{node}"
        props = self.dir / f"server-{node}.properties"
        props.write_text(BROKER_PROPERTIES.read_text() + f"""node.id={node}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{self.ports[node]},CONTROLLER://127.0.0.1:{self.controller_ports[node]}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.ports[node]}
log.dirs={data}
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
unclean.leader.election.enable=false
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
""")
        (self.dir / f"log4j-{node}.properties").write_text(f"""log4j.rootLogger=WARN, file
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={self.dir / f'kafka-{node}.log'}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
""")
        return props

    def start(self, timeout_s: float = 120) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        formats = [subprocess.Popen([*self._java(n), "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                     "-c", str(self._configure(n))], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE) for n in self.nodes]
        for proc in formats:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode(errors="replace")
        for node in self.nodes:
            self.start_node(node)
        wait_for(lambda: self.live_brokers() == len(self.nodes), timeout_s, "three brokers in the cluster", 0.5)

    def start_node(self, node: int) -> None:
        with open(self.dir / f"stdout-{node}.log", "ab") as out:
            self.procs[node] = subprocess.Popen([*self._java(node), "kafka.Kafka",
                                                 str(self.dir / f"server-{node}.properties")],
                                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def started_count(self, node: int) -> int:
        """How often the node logged that it started: a KRaft broker logs it once it has caught up with
        the metadata log and been unfenced (before that it may answer with its pre-crash metadata)."""
        log = self.dir / f"kafka-{node}.log"
        return log.read_text(errors="replace").count("Kafka Server started") if log.exists() else 0

    def restart(self, node: int, timeout_s: float = 90) -> None:
        before = self.started_count(node)
        self.start_node(node)
        wait_for(lambda: self.started_count(node) > before, timeout_s, f"broker {node} to start again", 0.5)

    def live_brokers(self) -> int:
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        except Exception:  # noqa: BLE001 - not up yet
            return 0
        try:
            return len(admin.describe_cluster()["brokers"])
        except Exception:  # noqa: BLE001
            return 0
        finally:
            admin.close()

    def leaders(self, topic: str) -> dict[int, int]:
        """partition -> leader node id."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            (described,) = admin.describe_topics([topic])
            return {p["partition_index"]: p["leader_id"] for p in described["partitions"]}
        finally:
            admin.close()

    def leader(self, topic: str, partition: int = 0) -> int | None:
        """The partition's leader now, or None while there is none or the cluster does not answer."""
        try:
            leader = self.leaders(topic).get(partition, -1)
        except Exception:  # noqa: BLE001 - mid-failover
            return None
        return leader if leader >= 0 else None

    def under_replicated(self) -> int | None:
        """Partitions (all topics, internal ones included) whose ISR lacks one of their replicas; None if
        the cluster does not answer. 0 = every replica caught up: safe to take the next broker down."""
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        except Exception:  # noqa: BLE001
            return None
        try:
            return sum(set(p["isr_nodes"]) != set(p["replica_nodes"])
                       for t in admin.describe_topics() for p in t["partitions"])
        except Exception:  # noqa: BLE001
            return None
        finally:
            admin.close()

    def kill(self, node: int, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.procs.pop(node)
        proc.send_signal(sig)
        proc.wait(60)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
