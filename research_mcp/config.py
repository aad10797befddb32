"""Settings: environment variables (`RESEARCH_MCP_*`, `GITHUB_TOKEN`, `S2_API_KEY`), then
`<workspace>/.research/config.toml`, then defaults. Command-line flags win over all of them.

`Settings` is built once in `main()`; tests build it directly with the values they need.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["TOOLSETS", "BackendChoice", "BackendName", "Settings", "Toolset", "config_toml_path"]

Toolset = Literal["literature", "repos", "sandbox", "metrics", "latex", "review", "pipeline", "files"]
TOOLSETS: tuple[Toolset, ...] = ("literature", "repos", "sandbox", "metrics", "latex", "review", "pipeline", "files")

BackendName = Literal["docker", "local", "slurm"]
"""The sandbox backends, written here once: `research_mcp.sandbox.registry` holds one entry for each (a test checks
that they agree), and every parameter that names a backend takes `BackendChoice`."""
BackendChoice = Literal["auto", BackendName]


def config_toml_path(workspace: Path) -> Path:
    """Where a workspace keeps its own settings."""
    return workspace / ".research" / "config.toml"


class Settings(BaseSettings):
    """Everything the server can be told. Field names are the `RESEARCH_MCP_<NAME>` variables."""

    model_config = SettingsConfigDict(env_prefix="RESEARCH_MCP_", extra="ignore", populate_by_name=True)

    workspace: Path | None = Field(
        default=None, description="The project folder every path is relative to. Else the client's roots, else the cwd."
    )
    toolsets: Annotated[list[Toolset], NoDecode] = Field(
        default_factory=lambda: list(TOOLSETS), description="Tool families to offer."
    )
    read_only: bool = Field(default=False, description="Offer only the tools annotated readOnlyHint.")
    file_tools: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="List the files toolset to clients without file tools of their own (auto), to all (on), or none.",
    )
    token: SecretStr | None = Field(default=None, description="Bearer token streamable HTTP requests must carry.")

    arxiv_url: str = "https://export.arxiv.org/api/query"
    s2_url: str = "https://api.semanticscholar.org"
    github_url: str = "https://api.github.com"
    github_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("github_token", "RESEARCH_MCP_GITHUB_TOKEN", "GITHUB_TOKEN")
    )
    # repos: caps on a fetched repository, the time one fetch may take, the URL schemes git may clone
    max_repo_bytes: int = Field(default=200 << 20, ge=1 << 20, description="Largest repository download.")
    max_repo_unpacked_bytes: int = Field(
        default=1_000_000_000, ge=1 << 20, description="Most bytes a fetched repository may unpack to."
    )
    max_repo_files: int = Field(default=50_000, ge=10, description="Most files a fetched repository may hold.")
    repo_timeout_s: float = Field(default=40.0, gt=0, le=45, description="Time limit of one download or clone.")
    git_schemes: Annotated[list[Literal["https", "ssh", "http", "git"]], NoDecode] = Field(
        default_factory=lambda: ["https", "ssh"], description="URL schemes fetch_repo may clone from (non-GitHub)."
    )
    s2_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("s2_api_key", "RESEARCH_MCP_S2_API_KEY", "S2_API_KEY")
    )
    # literature: where e-prints and PDFs come from, request pacing, time limits, cache lifetimes
    arxiv_files_url: str = Field(
        default="https://arxiv.org", description="Base of arXiv e-print (/e-print/<id>) and PDF (/pdf/<id>) downloads."
    )
    arxiv_interval_s: float = Field(
        default=3.0, ge=0, le=60, description="Least time between two arXiv requests (arXiv asks for 3 s)."
    )
    s2_interval_s: float | None = Field(
        default=None, ge=0, le=60, description="Least time between two S2 requests; default 1 s with a key, else 3 s."
    )
    literature_timeout_s: float = Field(
        default=20.0, gt=0, le=45, description="Time limit of one arXiv / Semantic Scholar request."
    )
    search_cache_ttl_s: float = Field(
        default=6 * 3600, ge=0, description="How long a search or citation-graph answer is reused (0: never)."
    )
    paper_cache_ttl_s: float = Field(
        default=30 * 86400, ge=0, description="How long paper metadata is reused (citation graphs: search_cache_ttl_s)."
    )

    backend: BackendChoice = Field(
        default="auto",
        description="Backend of backend='auto': docker when its engine answers, else local; slurm only when set here.",
    )
    max_concurrent_runs: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Runs at once per workspace; default: what each backend takes (a run per core).",
    )
    allow_unsandboxed: bool = Field(
        default=False,
        description="Where bubblewrap is missing, run local experiments with no sandbox (cgroup limits only).",
    )
    python_envs: dict[str, Path] = Field(
        default_factory=dict[str, Path],
        description='Named Python environments runs may use (name -> folder), e.g. {"torch": "/opt/envs/torch"}.',
    )
    shared_data: Path | None = Field(
        default=None,
        description="Folder of datasets many projects use: each entry is read-only at /data/<name> in every run.",
    )
    max_snapshot_bytes: int = Field(default=200 << 20, ge=1 << 20, description="Largest code snapshot of a run.")
    max_run_disk_bytes: int = Field(
        default=20 << 30, ge=1 << 20, description="Most disk a run's folder may use; past it the run is killed."
    )
    max_log_bytes: int = Field(default=32 << 20, ge=64 << 10, description="Largest log.txt of a run; then head + tail.")
    docker_allow_network: bool = Field(
        default=False,
        description="Let Docker runs ask for network=True (the bridge also reaches host services on 0.0.0.0).",
    )
    docker_image: str = Field(
        default="research-sandbox:base", description="Image the doctor looks for and Docker runs use."
    )
    # slurm: where and how the slurm backend's jobs run (README, "Slurm")
    slurm_partition: str | None = Field(default=None, description="Partition jobs go to; default: the cluster's.")
    slurm_account: str | None = Field(default=None, description="Account jobs are charged to (--account).")
    slurm_qos: str | None = Field(default=None, description="Quality of service of jobs (--qos).")
    slurm_gpu_option: Literal["gres", "gpus"] = Field(
        default="gres", description="How jobs ask for GPUs: --gres=gpu:N or --gpus=N."
    )
    slurm_gpu_type: str | None = Field(default=None, description="GPU type jobs ask for (gpu:<type>:N), e.g. a100.")
    slurm_array_throttle: int = Field(
        default=0, ge=0, description="Most tasks of one job array running at once (--array=0-N%K); 0: no limit."
    )
    slurm_max_jobs: int = Field(default=100, ge=1, le=10_000, description="Jobs kept in Slurm's queue at once.")
    slurm_container: Literal["bwrap", "apptainer", "pyxis", "none"] = Field(
        default="bwrap", description="What contains a job's command: bubblewrap, Apptainer, Pyxis, or nothing."
    )
    slurm_image: str | None = Field(default=None, description="Image for apptainer (.sif) or pyxis runs.")
    slurm_binds: Annotated[list[str], NoDecode] = Field(
        default_factory=list[str], description="Node folders bound read-only into jobs: /opt, /apps, conda, /scratch."
    )
    slurm_time_margin_s: int = Field(
        default=60, ge=0, description="Added to timeout_s for --time; the job ends itself at timeout_s."
    )
    slurm_sbatch_args: Annotated[list[str], NoDecode] = Field(
        default_factory=list[str], description="Further sbatch options, e.g. --constraint=a100."
    )
    ca_bundle: Path | None = Field(
        default=None,
        description="CA bundle (PEM) for builds behind a TLS-intercepting proxy: environment builds (prepare_env) "
        "and `sandbox build-image` trust it; unset, environment builds get /etc/ssl/certs/ca-certificates.crt.",
    )

    metrics_max_line_bytes: int = Field(
        default=1 << 20, ge=1 << 10, description="Longest line a metrics reader takes; longer ones are skipped, named."
    )  # a 10 MB line in a log is skipped with a warning, never held whole
    metrics_max_json_bytes: int = Field(
        default=64 << 20, ge=1 << 10, description="Largest JSON document (not JSONL) read_metrics parses whole."
    )

    # latex: where TeX is, how long one compile may take, and whether it must run inside bubblewrap
    tex_bin: Path | None = Field(
        default=None, description="Folder holding pdflatex, latexmk, bibtex, biber; default: found on PATH."
    )
    latex_timeout_s: float = Field(
        default=45.0, gt=0, le=50, description="Time limit of one compile; then every process it started is killed."
    )
    latex_sandbox: Literal["auto", "bwrap", "off"] = Field(
        default="auto", description="Compile inside bubblewrap: when it works (auto), always (bwrap), or never (off)."
    )
    page_limit: int | None = Field(
        default=None, ge=1, le=10_000, description="Pages a paper may have (audit_paper counts the last PDF's)."
    )

    # review: the model the user configured to review papers (an OpenAI-compatible chat-completions endpoint)
    review_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible API (ending in /v1) that reviews papers; unset: none.",
    )
    review_model: str | None = Field(default=None, description="The model review_url serves to reviewers.")
    review_api_key: SecretStr | None = Field(default=None, description="Bearer key for review_url, if it needs one.")
    review_timeout_s: float = Field(default=180.0, gt=0, le=900, description="Time limit of one review request.")
    review_max_tokens: int = Field(default=4000, ge=500, le=32_000, description="Most tokens of one review answer.")

    max_output_chars: int = Field(
        default=24_000, ge=1_000, le=400_000, description="Budget for one tool answer's text."
    )
    max_file_bytes: int = Field(default=20 << 20, ge=1 << 10, description="Largest file grep/edit_file open.")
    probe_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Time limit of each lab_info probe.")
    data_dir: Path | None = Field(
        default=None, description="Global cache folder; default: the platform's user data dir."
    )

    @field_validator("toolsets", "git_schemes", "slurm_binds", "slurm_sbatch_args", mode="before")
    @classmethod
    def _split_toolsets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("workspace", "data_dir", "tex_bin", "ca_bundle", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    def user_data_dir(self) -> Path:
        """The global cache folder shared by all workspaces of this user."""
        if self.data_dir is not None:
            return self.data_dir
        import platformdirs

        return Path(platformdirs.user_data_dir("research-mcp", appauthor=False))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _WorkspaceToml(settings_cls))


class _WorkspaceToml(PydanticBaseSettingsSource):
    """Reads `<workspace>/.research/config.toml` for the workspace the higher sources named (or the cwd)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ is overridden; pydantic-settings never calls this then

    def __call__(self) -> dict[str, Any]:
        workspace = self.current_state.get("workspace")
        root = Path(workspace).expanduser() if workspace else Path(os.getcwd())
        path = config_toml_path(root)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return {}
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            from research_mcp.errors import ConfigError

            raise ConfigError(f"{path} is not valid TOML ({exc}). Fix or remove it.") from exc
        data.pop("workspace", None)  # a workspace cannot move itself elsewhere
        return {key: value for key, value in data.items() if key in self.settings_cls.model_fields}
