"""What the README promises on a fresh machine: its commands install the package, and the test run is
green on any CPU (no test compares model outputs bit for bit)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
README = TESTS.parent / "README.md"
OUTPUT_NAMES = ("logits", "last_hidden_state", "pooler_output", "hidden_states", "attentions")


def exact_comparisons_of_model_outputs(source: str) -> list[int]:
    """Lines where torch.equal compares something that reads a model output (`.logits`, ...)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.equal":
            if any(isinstance(part, ast.Attribute) and part.attr in OUTPUT_NAMES
                   for arg in node.args for part in ast.walk(arg)):
                lines.append(node.lineno)
    return lines


def test_no_test_compares_model_outputs_bit_for_bit():
    """Equal weights and inputs can still round differently where the weights sit at another memory
    alignment (seen: 1.2e-7 on an AVX2-only CPU); such comparisons use helpers.assert_same_arithmetic."""
    found = {path.name: lines for path in sorted(TESTS.rglob("*.py"))
             if (lines := exact_comparisons_of_model_outputs(path.read_text(encoding="utf-8")))}
    assert not found, f"bit-for-bit comparisons of model outputs (file: lines): {found}"


def test_the_check_sees_an_exact_comparison():
    assert exact_comparisons_of_model_outputs("assert torch.equal(a(x).logits, b(x).logits)") == [1]
    assert exact_comparisons_of_model_outputs("assert torch.equal(state['w'], other['w'])") == []
    assert exact_comparisons_of_model_outputs("assert torch.equal(attentions[0], expected)") == []


def test_the_package_is_installed_for_scripts_outside_the_repository(tmp_path):
    """The README's commands install vithybrid itself: a script in another folder imports it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", "from vithybrid import ViTHybridForImageClassification, resolve_model; "
                          "import visualization; print(resolve_model('shapes'))"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip(), "model.safetensors").is_file()  # the shipped model came along


def test_readme_commands_install_the_package_with_what_the_tests_need():
    commands = re.findall(r"```bash\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S)
    app = next(c for c in commands if "python app.py" in c)
    tests = next(c for c in commands if "pytest" in c)
    assert re.search(r"pip install (-e )?\"?\.\[app\]", app), app
    assert re.search(r"pip install (-e )?\"?\.\[test\]", tests), tests
    ci = (TESTS.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert '-e ".[test]"' in ci and "pytest" in ci


def test_readme_snippets_name_files_that_exist():
    """Every image a README snippet opens ships with the repository, so the snippets run as written."""
    blocks = re.findall(r"```(?:python|bash)\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S)
    named = {m for block in blocks for m in re.findall(r"[\w./-]+\.(?:png|jpe?g)\b", block)}
    written = {"tabby.png"}  # what a snippet saves, not what it reads
    assert named - written, "the README's snippets open no image at all"
    assert all((README.parent / name).is_file() for name in named - written), sorted(named - written)


def test_training_output_is_not_committed_by_accident():
    ignored = (README.parent / ".gitignore").read_text(encoding="utf-8").split()
    assert "runs/" in ignored
