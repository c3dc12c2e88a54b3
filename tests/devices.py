"""A device's labelled dataset served as the daemon serves it: the /api/dataset endpoints on 127.0.0.1
behind a bearer token, with the config file `edgesight dataset-export` reads on the device."""

from pathlib import Path

from edge.collect.api import DatasetApi
from edge.collect.labelling import Labelling
from edge.collect.sample import Sample
from edge.publish.http import HttpServer
from edge.publish.settings import HttpSettings
from edge.publish.telemetry import Telemetry
from tests.scenes import garage, jpeg


class Device:
    """``labelled``: class → number of garage frames labelled into it on this device (``seed`` varies them)."""

    def __init__(self, root: Path, name: str, labelled: dict[str, int], seed: int = 0) -> None:
        self.name, self.root = name, root
        root.mkdir(parents=True, exist_ok=True)
        (root / "http_token").write_text(f"token-of-{name}\n")
        self.labelling = Labelling(root / "state", 50_000_000)
        for n, (label, count) in enumerate(labelled.items()):
            for i in range(count):
                state = "open" if label == "open" else "closed"
                frame = seed * 1000 + n * 100 + i
                sample = Sample(captured=1764061200.0 + frame, reason="interval", device=name, frame=frame)
                item = self.labelling.inbox.put(jpeg(garage(state, frame)), sample)
                self.labelling.label([item.id], label)
        settings = HttpSettings(port=0, token_file=str(root / "http_token"))
        self.server = HttpServer(settings, Telemetry(name), dataset=DatasetApi(self.labelling))
        self.server.start()
        self.config = root / "edgesight.toml"
        port = self.server.url.rsplit(":", 1)[1]
        self.config.write_text(
            f'[source]\nuri = "0"\n[collect]\nstate_dir = "state"\n[http]\nport = {port}\ntoken_file = "http_token"\n'
        )

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return f"token-of-{self.name}"

    def hashes(self) -> dict[str, str]:
        return self.labelling.dataset.hashes()

    def close(self) -> None:
        self.server.close()
