"""The secrets scanner: every rule finds its format, placeholders pass, values never leak."""

from __future__ import annotations

import pytest

from agent.secrets import SecretScanner, is_secret_path, redact, scan

# Built from pieces so that this file itself does not look like it holds keys.
OPENAI_PROJ = "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" + "AbCdEfGh"
DEEPSEEK = "sk-" + "0123456789abcdef" + "fedcba9876543210"
ANTHROPIC = "sk-" + "ant-api03-" + "x" * 10 + "Q7w9E2r4T6y8U1i3O5p7" + "A" * 60
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLQ"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzEXAMPLEKE"
GITHUB = "ghp_" + "1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"
GITLAB = "glpat-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
GOOGLE = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
JWT = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0" + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END RSA " + "PRIVATE KEY-----"
URL_PASSWORD = "Zq8!xV3mK9"


@pytest.mark.parametrize(
    ("text", "rule", "value"),
    [
        (f"OPENAI_API_KEY={OPENAI_PROJ}\n", "openai-api-key", OPENAI_PROJ),
        (f"key = '{DEEPSEEK}'\n", "deepseek-api-key", DEEPSEEK),
        (f"client = Anthropic(api_key=\"{ANTHROPIC}\")", "anthropic-api-key", ANTHROPIC),
        (f"aws_access_key_id = {AWS_ID}", "aws-access-key-id", AWS_ID),
        (f'aws_secret_access_key = "{AWS_SECRET}"', "aws-secret-access-key", AWS_SECRET),
        (f"token: {GITHUB}", "github-token", GITHUB),
        (f"GITLAB={GITLAB}", "gitlab-token", GITLAB),
        (f"slack = '{SLACK}'", "slack-token", SLACK),
        (f"stripe.api_key = '{STRIPE}'", "stripe-key", STRIPE),
        (f"maps = '{GOOGLE}'", "google-api-key", GOOGLE),
        (f"Authorization: Bearer {JWT}", "jwt", JWT),
        (f"key = '''{PEM}'''", "private-key", PEM),
        (f"DATABASE_URL = 'postgres://app:{URL_PASSWORD}@db.internal:5432/app'", "url-credentials", URL_PASSWORD),
    ],
)
def test_each_rule_finds_and_redacts_its_format(text: str, rule: str, value: str) -> None:
    scanner = SecretScanner({})
    findings = scanner.scan(text, path="src/settings.py")
    assert [f.rule for f in findings] == [rule]
    clean, found = scanner.redact(text, path="src/settings.py")
    assert value not in clean and f"[REDACTED:{rule}]" in clean
    assert value not in repr(found) and value not in str([f.model_dump() for f in found])


def test_generic_assignments_in_config_files_use_entropy() -> None:
    scanner = SecretScanner({})
    env = "DEBUG=true\nDB_PASSWORD=hunter2hunter2\nAPI_TOKEN=q8Vz3LmN0pR7sT2w\nSECRET_KEY=changeme\n"
    rules = [(f.rule, f.line) for f in scanner.scan(env, path="deploy/app.env")]
    assert rules == [("generic-secret-assignment", 3)]  # low entropy and placeholders pass
    yaml = "db:\n  password: 'X9f!k2Lq0Zr8w'\n  user: app\n"
    assert [f.line for f in scanner.scan(yaml, path="config.yml")] == [2]
    # The same line in Python source is not a config assignment.
    assert scanner.scan("API_TOKEN=q8Vz3LmN0pR7sT2w\n", path="app/consts.py") == []


def test_placeholders_and_ordinary_code_are_not_secrets() -> None:
    scanner = SecretScanner({})
    text = (
        "url = 'postgres://user:password@localhost/db'\n"
        "task-list = ['sk-learn', 'risk-free']\n"
        "def ask_for_key(): return os.environ['OPENAI_API_KEY']\n"
        "x = 'AKIA' + suffix\n"
    )
    assert scanner.scan(text, path="a.py") == []


def test_environment_values_are_redacted_wherever_they_appear() -> None:
    value = "corp-internal-7Hq2Lk9Pz"
    scanner = SecretScanner({"MY_SERVICE_TOKEN": value, "HOME": "/home/someone/projects"})
    text = f"log: connecting with {value} to /home/someone/projects\n"
    clean, found = scanner.redact(text)
    assert value not in clean and "/home/someone/projects" in clean
    assert [f.rule for f in found] == ["env:MY_SERVICE_TOKEN"]


def test_the_working_directory_and_session_facts_are_not_secrets() -> None:
    # PWD and OLDPWD match the "pwd" of DB_PWD: the repository's path was redacted everywhere.
    env = {"PWD": "/home/someone/projects/app", "OLDPWD": "/home/someone/projects",
           "SSH_AUTH_SOCK": "/tmp/ssh-XXXXabcd/agent.1234", "DB_PWD": "corp-internal-7Hq2Lk9Pz"}
    text = "in /home/someone/projects/app (from /home/someone/projects) via /tmp/ssh-XXXXabcd/agent.1234 " \
           "with corp-internal-7Hq2Lk9Pz\n"
    clean, found = SecretScanner(env).redact(text)
    assert [f.rule for f in found] == ["env:DB_PWD"]
    assert clean.startswith("in /home/someone/projects/app (from /home/someone/projects) via /tmp/ssh-XXXXabcd/")


def test_module_functions_and_secret_paths() -> None:
    assert [f.rule for f in scan(f"k={GITHUB}")] == ["github-token"]
    assert redact("nothing here")[1] == []
    for path, expected in [
        (".env", ".env"),
        ("app/.env.production", ".env.*"),
        ("certs/server.pem", "*.pem"),
        ("home/.ssh/known_hosts", ".ssh/"),
        ("deploy/.aws/config", ".aws/"),
        ("keys/id_ed25519", "id_ed25519*"),
        ("src/keyboard.py", None),
        ("docs/environment.md", None),
    ]:
        assert is_secret_path(path) == expected, path


# A generated-looking value (built from pieces, like the keys above).
RANDOM = "q8Vz3LmN" + "0pR7sT2wXk5"


@pytest.mark.parametrize(
    "line",
    [
        f"DB_PASSWORD={RANDOM}",
        f"     2\tDB_PASSWORD={RANDOM}",  # view, cat -n, nl
        f"+DB_PASSWORD={RANDOM}",  # git diff, git log -p
        f"-DB_PASSWORD={RANDOM}",
        f" DB_PASSWORD={RANDOM}",  # diff context line
        f".env:2:DB_PASSWORD={RANDOM}",  # grep -n
        f"config/db.ini-3-password = {RANDOM}",  # grep context line
        f"config/db.ini:3:    password: '{RANDOM}'",
        f"export DB_PASSWORD={RANDOM}",
        f'{{"db": {{"password": "{RANDOM}"}}}}',  # one-line JSON
        f"docker run -e API_TOKEN={RANDOM} app",
        f"https://api.example.com/v1?access_token={RANDOM}&x=1",
        f"  3 | secretKey: {RANDOM}",
    ],
)
def test_assignments_are_found_behind_any_line_prefix(line: str) -> None:
    clean, found = SecretScanner({}).redact(line + "\n")
    assert RANDOM not in clean and [f.rule for f in found] == ["generic-secret-assignment"], clean


@pytest.mark.parametrize(
    "line",
    [
        # Lines of real code (tome's own and site-packages'), as view and grep show them.
        "   12\t        max_tokens=max_tokens,",
        "agent/loop.py:160:        self.pack_tokens = pack_tokens",
        "+            secret = self._key.get_secret_value()",
        "   40\t    token: TokenOpt = None,",
        '   88\t        api_key_env="OPENAI_API_KEY",',
        '   89\t        tokenizer="o200k_base",',
        "    7\t            credentials=credentials,",
        '   31\t    "refresh_token": "hf_oauth__refresh_token",',
        '    5\t_TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"',
        "   61\t    secrets: list[SecretFinding] = Field(default_factory=list)",
        "   70\t        password = request.POST.get(\"password\")",
        "   71\t        self._tokenizer = get_tokenizer(profile.tokenizer)",
        "   72\t    ssl_password: Optional password to be used when loading the certificate chain.",
        "   73\t        token.map = [startLine, state.line]",
        "   74\t        api_key=\"demo-key-not-secret\",",
        "   75\t        secret_path = /home/someone/.ssh/id_rsa_backup",
    ],
)
def test_code_and_names_behind_prefixes_are_not_secrets(line: str) -> None:
    assert SecretScanner({}).scan(line + "\n") == []


def test_redacting_twice_finds_nothing_new() -> None:
    scanner = SecretScanner({})
    once, found = scanner.redact(f"     2\tDB_PASSWORD={RANDOM}\n+API_TOKEN: '{RANDOM}x'\n")
    assert len(found) == 2
    assert scanner.redact(once) == (once, [])


def test_redact_outgoing_walks_a_request_body_and_keeps_what_is_clean() -> None:
    from agent.secrets import redact_outgoing

    body = {"model": "m", "messages": [{"role": "tool", "content": f"     2\tDB_PASSWORD={RANDOM}\n"},
                                       {"role": "user", "content": "hello"}], "max_tokens": 5}
    clean = redact_outgoing(body)
    assert RANDOM not in str(clean) and "DB_PASSWORD=[REDACTED:generic-secret-assignment]" in str(clean)
    assert clean["messages"][1] is body["messages"][1] and clean["max_tokens"] == 5
    assert redact_outgoing(clean) is clean  # nothing left to redact: the same object back
    assert redact_outgoing("plain text") == "plain text"


def test_line_numbers_of_many_findings() -> None:
    text = "".join(f"x\nTOKEN_{i}={RANDOM}{i}\n" for i in range(300))
    assert [f.line for f in SecretScanner({}).scan(text)] == [2 * i + 2 for i in range(300)]
