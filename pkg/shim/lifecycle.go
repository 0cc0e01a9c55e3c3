package shim

import (
	"fmt"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
)

// phase is where a container is in its life. Every task RPC asks the container's phase whether it
// may proceed (phase.allow), under the container's lock, so each illegal call gets an error of
// the right errdefs kind and no two calls can both pass a check that only one may (two Deletes).
//
//	creating --Create ok--> created --Start--> running <--Pause/Resume--> paused
//	    |                     |                   |                          |
//	    | Create failed       +------------ runner exits (any phase) --------+--> stopped
//	    v                                                                          |
//	 (gone)                 deleting <--Delete (created: the runner is killed first)+
//	                           |
//	                           v
//	                        deleted (removed from the shim)
type phase int

const (
	phaseCreating phase = iota
	phaseCreated
	phaseRunning
	phasePaused
	phaseStopped
	phaseDeleting
	phaseDeleted
)

var phaseNames = [...]string{"creating", "created", "running", "paused", "stopped", "being deleted", "deleted"}

func (p phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// status is the task status containerd sees in this phase.
func (p phase) status() tasktypes.Status {
	switch p {
	case phaseCreating, phaseCreated:
		return tasktypes.Status_CREATED
	case phaseRunning:
		return tasktypes.Status_RUNNING
	case phasePaused:
		return tasktypes.Status_PAUSED
	default:
		return tasktypes.Status_STOPPED
	}
}

// call is a task RPC about a container's init process.
type call int

const (
	callStart call = iota
	callKill
	callDelete
	callPause
	callResume
	callState
	callWait
	callPids
	callStats
	callCloseIO
	numCalls
)

var callNames = [numCalls]string{"start", "kill", "delete", "pause", "resume", "state", "wait", "pids", "stats", "close io"}

func (c call) String() string { return callNames[c] }

// rule is what one call does in one phase: nil error lets it proceed.
type rule struct {
	kind error  // errdefs kind of the refusal; nil allows the call
	why  string // the refusal's reason, after "container ID is PHASE: "
}

var allowed = rule{}

// rules is the whole (phase, call) table. Its shape follows the runc shim's process states
// (init_state.go): a process that exited answers Kill with ErrNotFound, a running one refuses
// Delete with ErrFailedPrecondition; a container being deleted or deleted is not found for
// anything that would act on it.
var rules = [...][numCalls]rule{
	phaseCreating: {
		callStart:   {errdefs.ErrFailedPrecondition, "wait for Create to return"},
		callKill:    {errdefs.ErrFailedPrecondition, "wait for Create to return"},
		callDelete:  {errdefs.ErrFailedPrecondition, "wait for Create to return"},
		callPause:   {errdefs.ErrFailedPrecondition, "wait for Create to return"},
		callResume:  {errdefs.ErrFailedPrecondition, "wait for Create to return"},
		callState:   allowed,
		callWait:    allowed,
		callPids:    allowed,
		callStats:   allowed,
		callCloseIO: allowed,
	},
	phaseCreated: {
		callStart:   allowed,
		callKill:    allowed,
		callDelete:  allowed, // the runner, waiting for Start, is killed first
		callPause:   {errdefs.ErrFailedPrecondition, "start it before pausing it"},
		callResume:  {errdefs.ErrFailedPrecondition, "it is not paused"},
		callState:   allowed,
		callWait:    allowed,
		callPids:    allowed,
		callStats:   allowed,
		callCloseIO: allowed,
	},
	phaseRunning: {
		callStart:   {errdefs.ErrFailedPrecondition, "it was started already"},
		callKill:    allowed,
		callDelete:  {errdefs.ErrFailedPrecondition, "kill it before deleting it"},
		callPause:   allowed,
		callResume:  {errdefs.ErrFailedPrecondition, "it is not paused"},
		callState:   allowed,
		callWait:    allowed,
		callPids:    allowed,
		callStats:   allowed,
		callCloseIO: allowed,
	},
	phasePaused: {
		callStart:   {errdefs.ErrFailedPrecondition, "it was started already"},
		callKill:    allowed, // SIGKILL and SIGTERM thaw it too
		callDelete:  {errdefs.ErrFailedPrecondition, "kill it before deleting it"},
		callPause:   {errdefs.ErrFailedPrecondition, "it is paused already"},
		callResume:  allowed,
		callState:   allowed,
		callWait:    allowed,
		callPids:    allowed,
		callStats:   allowed,
		callCloseIO: allowed,
	},
	phaseStopped: {
		callStart:   {errdefs.ErrFailedPrecondition, "its process has exited; create it again"},
		callKill:    {errdefs.ErrNotFound, "process already finished"},
		callDelete:  allowed,
		callPause:   {errdefs.ErrFailedPrecondition, "its process has exited"},
		callResume:  {errdefs.ErrFailedPrecondition, "its process has exited"},
		callState:   allowed,
		callWait:    allowed,
		callPids:    allowed, // no processes
		callStats:   allowed, // the cgroup lives until Delete
		callCloseIO: allowed, // nothing left to close
	},
	phaseDeleting: {
		callStart:   {errdefs.ErrNotFound, "it is being deleted"},
		callKill:    {errdefs.ErrNotFound, "process already finished"},
		callDelete:  {errdefs.ErrNotFound, "another Delete is removing it"},
		callPause:   {errdefs.ErrNotFound, "it is being deleted"},
		callResume:  {errdefs.ErrNotFound, "it is being deleted"},
		callState:   allowed,
		callWait:    allowed,
		callPids:    allowed,
		callStats:   {errdefs.ErrNotFound, "it is being deleted"},
		callCloseIO: allowed,
	},
	phaseDeleted: {
		callStart:   {errdefs.ErrNotFound, "it was deleted"},
		callKill:    {errdefs.ErrNotFound, "it was deleted"},
		callDelete:  {errdefs.ErrNotFound, "it was deleted"},
		callPause:   {errdefs.ErrNotFound, "it was deleted"},
		callResume:  {errdefs.ErrNotFound, "it was deleted"},
		callState:   {errdefs.ErrNotFound, "it was deleted"},
		callWait:    {errdefs.ErrNotFound, "it was deleted"},
		callPids:    {errdefs.ErrNotFound, "it was deleted"},
		callStats:   {errdefs.ErrNotFound, "it was deleted"},
		callCloseIO: {errdefs.ErrNotFound, "it was deleted"},
	},
}

// allow returns nil when call may proceed in phase p, else an error of the rule's errdefs kind
// that names the container, its phase, the call and what to do.
func (p phase) allow(id string, c call) error {
	r := rules[p][c]
	if r.kind == nil {
		return nil
	}
	return fmt.Errorf("%s container %s: it is %s: %s: %w", c, id, p, r.why, r.kind)
}
