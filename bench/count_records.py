"""Counts the records a benchmark peer produced, so bench/run can fail a run that landed
fewer (or more) than asked for.

Usage: python3 count_records.py airbyte FILE.gz   RECORD messages of an Airbyte protocol stream
       python3 count_records.py jsonl FILE.gz     JSON lines of a landed file

An Airbyte stream that reports a failure (a TRACE message of type ERROR) counts as an error.
"""

import gzip
import json
import sys


def main() -> None:
    kind, path = sys.argv[1:3]
    records = 0
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            message = json.loads(line)
            if kind == "jsonl":
                records += 1
            elif message.get("type") == "RECORD":
                records += 1
            elif message.get("type") == "TRACE" and message["trace"].get("type") == "ERROR":
                sys.exit(f"airbyte reported an error: {message['trace']['error'].get('message')}")
    print(records)


if __name__ == "__main__":
    main()
