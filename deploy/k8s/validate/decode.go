package validate

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
)

// Object is a decoded object of the set.
type Object struct {
	Rendered
	// GVK is its group, version and kind; Typed the k8s.io/api value.
	GVK   schema.GroupVersionKind
	Typed runtime.Object
}

// typedScheme holds the k8s.io/api types the manifests may use; anything else is refused.
var typedScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes YAML into the registered types, refusing unknown and duplicate fields and
// values of the wrong type (the API server's strict field validation).
var strict = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, typedScheme, typedScheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// Decode decodes each rendered object strictly into its k8s.io/api type. Every problem is
// returned, each naming the object.
func Decode(rs []Rendered) ([]Object, []error) {
	var out []Object
	var errs []error
	for _, r := range rs {
		obj, gvk, err := strict.Decode(r.YAML, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: decoding strictly as %s: %w", r.ID(), kindOf(gvk), err))
			continue
		}
		out = append(out, Object{Rendered: r, GVK: *gvk, Typed: obj})
	}
	return out, errs
}

func kindOf(gvk *schema.GroupVersionKind) string {
	if gvk == nil {
		return "a Kubernetes object"
	}
	return gvk.String()
}
