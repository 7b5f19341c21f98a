"""`maomao dataset ...`: the shared registry of git datasets."""

from __future__ import annotations

from typing import Any

import typer

from . import completion, output
from .output import Output
from .state import use

app = typer.Typer(help="Git datasets shared by the collaboration.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name.", autocompletion=completion.datasets),
    url: str = typer.Argument(
        ..., help="Git URL: https://, ssh://, git://, file://, user@host:path or a path."
    ),
    branch: str | None = typer.Option(
        None, "--branch", "-b", help="Branch to follow (default: the remote's HEAD)."
    ),
    push: bool = typer.Option(
        False, "--push/--no-push", help="Push each run's commit to the remote."
    ),
    depth: int | None = typer.Option(None, "--depth", help="Clone only this many recent commits."),
) -> None:
    """Add a dataset (or update it)."""
    from ..services.registry import DatasetSpec

    spec = DatasetSpec(name=name, url=url, branch=branch, push=push, depth=depth)
    state = use(ctx)
    dataset, created = state.services.registry.add_dataset(spec)
    name, url = output.safe_markup(dataset.name), output.safe_markup(dataset.url)
    state.out.success(f"{'added' if created else 'updated'} dataset [bold]{name}[/bold] → {url}")


@app.command("list")
def list_(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")
) -> None:
    """List the datasets."""
    state = use(ctx)
    found = sorted(state.services.registry.datasets(), key=lambda d: d.name)
    if as_json:
        state.out.print_json([d.to_dict() for d in found])
        return
    if not found:
        state.out.note("no datasets; add one with `maomao dataset add NAME URL`")
        return
    state.out.print(
        output.table(
            "Datasets",
            ["name", "url", "branch", "push", "depth"],
            (
                (
                    d.name,
                    d.url,
                    d.branch or "(default)",
                    "yes" if d.push else "no",
                    d.depth or "full",
                )
                for d in found
            ),
        )
    )


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., autocompletion=completion.datasets),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one dataset."""
    state = use(ctx)
    dataset = state.services.registry.get_dataset(name)
    if as_json:
        state.out.print_json(dataset.to_dict())
        return
    for key, value in dataset.to_dict().items():
        state.out.print(f"[bold]{key}[/bold]: {output.safe_markup(str(value))}", markup=True)


@app.command("rm")
def rm(
    ctx: typer.Context, name: str = typer.Argument(..., autocompletion=completion.datasets)
) -> None:
    """Remove a dataset from the registry (local clones stay)."""
    state = use(ctx)
    dataset = state.services.registry.remove_dataset(name)
    state.out.success(f"removed dataset [bold]{output.safe_markup(dataset.name)}[/bold]")


@app.command("clone")
def clone(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name.", autocompletion=completion.datasets),
    dest: str | None = typer.Option(
        None, "--dest", help="Directory to clone into (default: <importdir>/datasets/NAME)."
    ),
) -> None:
    """Clone a dataset onto this member."""
    state = use(ctx)
    from pathlib import Path

    service = state.services.datasets
    with GitProgress(state.out) as progress:
        path = service.clone(name, Path(dest) if dest else None, progress=progress)
    state.out.success(
        f"cloned dataset [bold]{output.safe_markup(name)}[/bold] into {output.safe_markup(str(path))}"
    )


@app.command("pull")
def pull(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name.", autocompletion=completion.datasets),
) -> None:
    """Bring this member's clone up to date (fast-forward, or merge non-conflicting changes)."""
    state = use(ctx)
    with GitProgress(state.out) as progress:
        result = state.services.datasets.pull(name, progress=progress)
    if result.conflict:
        from ..errors import GitError

        raise GitError(
            f"dataset {name}: the remote changed the same file(s) as local commits: "
            + (", ".join(result.conflicts) or "unknown"),
            hint="nothing local was touched; merge with git in the clone, or keep running "
            "and push later",
        )
    head = (result.head or "")[:12]
    messages = {
        "up-to-date": "is up to date",
        "fast-forward": f"fast-forwarded to {head}",
        "merged": f"merged the remote changes ({head})",
    }
    outcome = output.safe_markup(messages.get(result.outcome, result.outcome))
    state.out.success(f"dataset [bold]{output.safe_markup(name)}[/bold] {outcome}")


@app.command("push")
def push(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name.", autocompletion=completion.datasets),
) -> None:
    """Push this member's local commits now (runs push on their own when --push is set)."""
    state = use(ctx)
    state.services.datasets.push(name)
    state.out.success(f"pushed dataset [bold]{output.safe_markup(name)}[/bold]")


@app.command("status")
def status(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name.", autocompletion=completion.datasets),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Commits not pushed yet, uncommitted files, and the last push error."""
    state = use(ctx)
    if as_json:
        state.out.json_mode = True
    service = state.services.datasets
    st = service.status(name)
    path = service.work_dir(state.services.registry.get_dataset(name))
    if as_json:
        state.out.print_json(
            {
                "name": name,
                "path": str(path),
                "branch": st.branch,
                "ahead": st.ahead,
                "behind": st.behind,
                "changed_files": st.changed_files,
                "last_push_error": st.last_push_error,
                "unpushed_runs": list(st.unpushed_runs),
            }
        )
        return
    escape = output.safe_markup  # file names and the push error come from the remote
    con = state.out.console
    con.print(f"[bold]{escape(name)}[/bold] at {escape(str(path))} on {escape(st.branch)}")
    con.print(f"  ahead {st.ahead} (local commits not pushed), behind {st.behind}")
    con.print(f"  {len(st.changed_files)} uncommitted file(s)")
    for changed in st.changed_files[:20]:
        con.print(f"    {escape(changed)}")
    if len(st.changed_files) > 20:
        con.print(f"    ... and {len(st.changed_files) - 20} more")
    if st.unpushed_runs:
        shown = ", ".join(st.unpushed_runs[:10]) + (" ..." if len(st.unpushed_runs) > 10 else "")
        con.print(f"  [red]{len(st.unpushed_runs)} run(s) not on the remote:[/red] {shown}")
    if st.last_push_error:
        con.print(f"  [red]last push error:[/red] {escape(st.last_push_error)}")


@app.command("key")
def key(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name.", autocompletion=completion.datasets),
) -> None:
    """Create (once) and print the dataset's SSH key, to add as a deploy key."""
    state = use(ctx)
    path, public = state.services.datasets.key(name)
    state.out.text(public)
    state.out.note(
        f"private key: {path} (owner-only). Add the line above as a deploy key with write "
        "access on the dataset's repository (or to the git user's authorized_keys); maomao "
        f"uses it for {name}'s SSH remotes."
    )


class GitProgress:
    """A Rich progress bar per phase of a clone or pull, from git's progress lines."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> GitProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, line: str) -> None:
        from ..gitprogress import parse_progress

        parsed = parse_progress(line)
        if parsed is None:
            return
        phase, done, total = parsed
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=self.out.err_console,
                transient=True,
            )
            self._progress.start()
        task = self._tasks.get(phase)
        if task is None:
            # The remote wrote the phase; a task description is markup.
            task = self._progress.add_task(output.safe_markup(phase), total=total or None)
            self._tasks[phase] = task
        self._progress.update(task, completed=done, total=total or None)
