"""fsm_exec.cli."""
