"""fsm_exec: execute a trading strategy's instruction blocks as explicit finite state machines."""

from ._blocks import InstructionBlock
from ._check import CheckReport, check_journal
from ._config import Environment, ExecutionConfig
from ._csv import CSV_COLUMNS, DELTAS_COLUMNS, export_csv
from ._errors import (
    ERROR_CODES,
    BlockProblem,
    ComponentError,
    ConfigError,
    ErrorCode,
    EventLogError,
    InvalidArgumentError,
    InvalidBlockError,
    ManagerInterruptedError,
    QueueFullError,
    ReentrantCallError,
    ScrubbedException,
    Severity,
)
from ._health import HealthStatus, UnifiedHealthManager
from ._journal import (
    EventLogger,
    JournalCorruptError,
    JournalLockedError,
    JournalRecord,
    journal_files,
    read_journal,
)
from ._lifecycle import (
    INITIAL_STATE,
    LEGAL_MOVES,
    NEXT_STATE,
    TERMINAL_STATES,
    TRANSITIONS,
    BlockLifecycle,
    BlockState,
    Edge,
    IllegalTransitionError,
    InvalidLifecycleError,
    Trigger,
    validate_table,
)
from ._manager import TRIGGER_SOURCES, ExecutionManager, check_prices
from ._oplog import disable_logging, enable_logging
from ._protocols import (
    DataProvider,
    EventSink,
    ExecutionInterfaceManager,
    ExecutionRejected,
    PositionUpdateHandler,
    ReconciliationComponent,
    RiskCheck,
)
from ._replay import RecoveryReport

__version__ = "0.1.0"

__all__ = [
    "CSV_COLUMNS",
    "DELTAS_COLUMNS",
    "ERROR_CODES",
    "INITIAL_STATE",
    "LEGAL_MOVES",
    "NEXT_STATE",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "TRIGGER_SOURCES",
    "BlockLifecycle",
    "BlockProblem",
    "BlockState",
    "CheckReport",
    "ComponentError",
    "ConfigError",
    "DataProvider",
    "Edge",
    "Environment",
    "ErrorCode",
    "EventLogError",
    "EventLogger",
    "EventSink",
    "ExecutionConfig",
    "ExecutionInterfaceManager",
    "ExecutionManager",
    "ExecutionRejected",
    "HealthStatus",
    "IllegalTransitionError",
    "InstructionBlock",
    "InvalidArgumentError",
    "InvalidBlockError",
    "InvalidLifecycleError",
    "JournalCorruptError",
    "JournalLockedError",
    "JournalRecord",
    "ManagerInterruptedError",
    "PositionUpdateHandler",
    "QueueFullError",
    "ReconciliationComponent",
    "RecoveryReport",
    "ReentrantCallError",
    "RiskCheck",
    "ScrubbedException",
    "Severity",
    "Trigger",
    "UnifiedHealthManager",
    "check_journal",
    "check_prices",
    "disable_logging",
    "enable_logging",
    "export_csv",
    "journal_files",
    "read_journal",
    "validate_table",
    "__version__",
]

# Public classes present themselves under the public package (tracebacks, reprs, pickles).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith(f"{__name__}._"):
        _obj.__module__ = __name__
del _name, _obj
