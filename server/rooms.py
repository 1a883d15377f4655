"""Socket.IO room names: the only place they are spelled."""


def conversation(conversation_id: str) -> str:
    return f"conv:{conversation_id}"


def org_queue(org_id: str) -> str:
    return f"org:{org_id}:queue"


def org_presence(org_id: str) -> str:
    return f"org:{org_id}:presence"
