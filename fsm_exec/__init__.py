"""fsm_exec: execute a trading strategy's instruction blocks as explicit finite state machines."""

from fsm_exec._version import __version__
from fsm_exec.boundary.blocks import InstructionBlock
from fsm_exec.boundary.config import Environment, ExecutionConfig
from fsm_exec.boundary.protocols import (
    DataProvider,
    EventSink,
    ExecutionInterfaceManager,
    ExecutionRejected,
    HandOffKey,
    PositionUpdateHandler,
    ReconciliationComponent,
    RiskCheck,
)
from fsm_exec.core.errors import (
    ERROR_CODES,
    AlreadyAcceptedError,
    BlockProblem,
    ComponentError,
    ConfigError,
    ErrorCode,
    EventLogError,
    InvalidArgumentError,
    InvalidBlockError,
    LifecycleCallError,
    LifecycleChangedError,
    ManagerHaltedError,
    ManagerInterruptedError,
    QueueFullError,
    ReentrantCallError,
    ScrubbedException,
    Severity,
)
from fsm_exec.core.lifecycle import (
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
from fsm_exec.core.lifecycles import (
    GuardContext,
    Lifecycle,
    LifecycleError,
    RuleViolation,
    StateKind,
)
from fsm_exec.drivers.risk import check_prices
from fsm_exec.journal.export import CSV_COLUMNS, DELTAS_COLUMNS, export_csv
from fsm_exec.journal.files import JournalCorruptError, journal_files
from fsm_exec.journal.lock import JournalLockedError
from fsm_exec.journal.reader import JournalRecord, read_journal
from fsm_exec.journal.runs import backtest_run
from fsm_exec.journal.state import RecoveryReport
from fsm_exec.journal.writer import EventLogger
from fsm_exec.manager.manager import TRIGGER_SOURCES, ExecutionManager
from fsm_exec.observe.health import HealthStatus, UnifiedHealthManager
from fsm_exec.observe.oplog import disable_logging, enable_logging
from fsm_exec.tools.check import CheckReport, check_journal
from fsm_exec.tools.frames import JournalFrames, journal_frame

__all__ = [
    "AlreadyAcceptedError",
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
    "GuardContext",
    "HandOffKey",
    "HealthStatus",
    "IllegalTransitionError",
    "InstructionBlock",
    "InvalidArgumentError",
    "InvalidBlockError",
    "InvalidLifecycleError",
    "JournalCorruptError",
    "JournalFrames",
    "JournalLockedError",
    "JournalRecord",
    "Lifecycle",
    "LifecycleCallError",
    "LifecycleChangedError",
    "LifecycleError",
    "ManagerHaltedError",
    "ManagerInterruptedError",
    "PositionUpdateHandler",
    "QueueFullError",
    "ReconciliationComponent",
    "RecoveryReport",
    "ReentrantCallError",
    "RiskCheck",
    "RuleViolation",
    "ScrubbedException",
    "Severity",
    "StateKind",
    "Trigger",
    "UnifiedHealthManager",
    "backtest_run",
    "check_journal",
    "check_prices",
    "disable_logging",
    "enable_logging",
    "export_csv",
    "journal_files",
    "journal_frame",
    "read_journal",
    "validate_table",
    "__version__",
]
