"""fsm_exec: execute a trading strategy's instruction blocks as explicit finite state machines."""

from ._blocks import InstructionBlock
from ._config import Environment, ExecutionConfig
from ._errors import (
    ERROR_CODES,
    BlockProblem,
    ComponentError,
    ConfigError,
    ErrorCode,
    EventLogError,
    InvalidArgumentError,
    InvalidBlockError,
    QueueFullError,
    ReentrantCallError,
    Severity,
)
from ._health import HealthStatus, UnifiedHealthManager
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
from ._protocols import (
    DataProvider,
    EventSink,
    ExecutionInterfaceManager,
    ExecutionRejected,
    PositionUpdateHandler,
    ReconciliationComponent,
    RiskCheck,
)

__version__ = "0.1.0"

__all__ = [
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
    "ComponentError",
    "ConfigError",
    "DataProvider",
    "Edge",
    "Environment",
    "ErrorCode",
    "EventLogError",
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
    "PositionUpdateHandler",
    "QueueFullError",
    "ReconciliationComponent",
    "ReentrantCallError",
    "RiskCheck",
    "Severity",
    "Trigger",
    "UnifiedHealthManager",
    "__version__",
    "check_prices",
    "validate_table",
]

# Public classes present themselves under the public package (tracebacks, reprs, pickles).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith(f"{__name__}._"):
        _obj.__module__ = __name__
del _name, _obj
