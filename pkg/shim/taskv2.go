package shim

import (
	"context"
	"fmt"
	"reflect"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
)

// taskV2Service is the ttrpc name of the task API that containerd 1.x daemons (and 2.x daemons
// talking to a shim that answered `start` the old way) call.
const taskV2Service = "containerd.task.v2.Task"

// registerTaskV2 serves the task v2 API with the same implementation as v3. The two versions'
// messages are identical on the wire (same fields, same numbers; v3 only renamed the package), so
// each v2 call is decoded straight into the v3 request type. This is what lets one binary serve
// containerd 1.6 and 1.7 as well as 2.x.
func registerTaskV2(server *ttrpc.Server, svc taskAPI.TTRPCTaskService) error {
	methods := map[string]ttrpc.Method{}
	v := reflect.ValueOf(svc)
	iface := reflect.TypeOf((*taskAPI.TTRPCTaskService)(nil)).Elem()
	for i := 0; i < iface.NumMethod(); i++ {
		name := iface.Method(i).Name
		m := v.MethodByName(name)
		if !m.IsValid() {
			return fmt.Errorf("task service has no method %s", name)
		}
		reqType := m.Type().In(1).Elem() // func(ctx, *Req) (*Resp, error)
		methods[name] = func(ctx context.Context, unmarshal func(any) error) (any, error) {
			req := reflect.New(reqType)
			if err := unmarshal(req.Interface()); err != nil {
				return nil, err
			}
			out := m.Call([]reflect.Value{reflect.ValueOf(ctx), req})
			if err, _ := out[1].Interface().(error); err != nil {
				return nil, err
			}
			return out[0].Interface(), nil
		}
	}
	server.RegisterService(taskV2Service, &ttrpc.ServiceDesc{Methods: methods})
	return nil
}
