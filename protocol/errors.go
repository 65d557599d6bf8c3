package protocol

import (
	"errors"
	"fmt"
)

// Sentinel errors of message decoding.
var (
	// ErrMessage is returned when a message cannot be decoded or fails validation; the error
	// names the message type and the field.
	ErrMessage = errors.New("invalid message")
	// ErrMessageVersion is returned for a message of another format version.
	ErrMessageVersion = errors.New("unsupported message version")
)

// ErrUnavailable marks a failure to reach the cluster (NATS, JetStream or the artifact store did
// not answer, or the connection dropped): the operation may succeed when it is tried again.
// Stores and transports wrap it; a task result carries it as CodeUnavailable.
var ErrUnavailable = errors.New("cluster unavailable")

// Code is a stable numeric error code carried by replies and results. The numbers never change
// meaning; new codes are appended.
type Code int

// The error codes.
const (
	// CodeOK is no error.
	CodeOK Code = 0
	// CodeBadRequest is a request that does not decode or validate.
	CodeBadRequest Code = 1001
	// CodeVersion is a peer of another iteris or message version.
	CodeVersion Code = 1002
	// CodeNotLeader is a request sent to a coordinator that does not lead.
	CodeNotLeader Code = 1003
	// CodeInvalidConfig is a merge config that `iteris merge` would refuse too.
	CodeInvalidConfig Code = 1004
	// CodeNotFound is an unknown job.
	CodeNotFound Code = 1005
	// CodeNotDone is a fetch of a job that has not finished.
	CodeNotDone Code = 1006
	// CodeJobFailed is a fetch of a job that failed or was canceled.
	CodeJobFailed Code = 1007
	// CodeInputCorrupt is a task whose input artifact failed its hash check or did not decode.
	CodeInputCorrupt Code = 2001
	// CodeInputMissing is a task whose input artifact is not in the store.
	CodeInputMissing Code = 2002
	// CodeTaskFailed is a task whose computation failed.
	CodeTaskFailed Code = 2003
	// CodeStale is a task attempt that is no longer current.
	CodeStale Code = 2004
	// CodeUnavailable is a task that could not reach the cluster (NATS or the artifact store did
	// not answer, the connection dropped): it runs again without counting as a failure.
	CodeUnavailable Code = 2005
	// CodeInternal is an unexpected failure of the answering process.
	CodeInternal Code = 9001
)

// String names the code.
func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeBadRequest:
		return "bad_request"
	case CodeVersion:
		return "version"
	case CodeNotLeader:
		return "not_leader"
	case CodeInvalidConfig:
		return "invalid_config"
	case CodeNotFound:
		return "not_found"
	case CodeNotDone:
		return "not_done"
	case CodeJobFailed:
		return "job_failed"
	case CodeInputCorrupt:
		return "input_corrupt"
	case CodeInputMissing:
		return "input_missing"
	case CodeTaskFailed:
		return "task_failed"
	case CodeStale:
		return "stale"
	case CodeUnavailable:
		return "unavailable"
	case CodeInternal:
		return "internal"
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Error is an error carried in a reply or result.
type Error struct {
	// Code is the stable code.
	Code Code `json:"code"`
	// Message says what was wrong, naming the job, task, site or field.
	Message string `json:"message"`
	// Ref names the artifact concerned (input errors).
	Ref *Ref `json:"ref,omitempty"`
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("%s (%d): %s", e.Code, int(e.Code), e.Message) }

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
