package clientapi

import (
	"net/http"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/users"
)

// maxDeviceNameLen is Synapse's limit on device display names, in characters.
const maxDeviceNameLen = 100

type devicesResp struct {
	Devices []users.Device `json:"devices"`
}

// getDevices serves GET /_matrix/client/v3/devices (device_management.yaml).
func (a *API) getDevices(w http.ResponseWriter, r *http.Request) error {
	devs, err := a.users.Devices(r.Context(), session(r).UserID)
	if err != nil {
		return err
	}
	return httpx.OK(w, devicesResp{Devices: devs})
}

// getDevice serves GET /_matrix/client/v3/devices/{deviceId}
// (device_management.yaml).
func (a *API) getDevice(w http.ResponseWriter, r *http.Request) error {
	dev, err := a.users.Device(r.Context(), session(r).UserID, id.DeviceID(r.PathValue("deviceId")))
	if err != nil {
		return err
	}
	return httpx.OK(w, dev)
}

type updateDeviceReq struct {
	DisplayName *string `json:"display_name"`
}

// updateDevice serves PUT /_matrix/client/v3/devices/{deviceId}
// (device_management.yaml). Regular clients may only update devices that
// exist; creating devices is for application services, which Myelin does
// not serve here.
func (a *API) updateDevice(w http.ResponseWriter, r *http.Request) error {
	var req updateDeviceReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	user, dev := session(r).UserID, id.DeviceID(r.PathValue("deviceId"))
	if req.DisplayName == nil {
		// Nothing to change, but an unknown device is still a 404.
		if _, err := a.users.Device(r.Context(), user, dev); err != nil {
			return err
		}
		return httpx.OK(w, httpx.Empty)
	}
	if utf8.RuneCountInString(*req.DisplayName) > maxDeviceNameLen {
		return mxerr.TooLarge.WithStatus(http.StatusBadRequest).With("device display name is longer than %d characters", maxDeviceNameLen)
	}
	if err := a.users.RenameDevice(r.Context(), user, dev, *req.DisplayName); err != nil {
		return err
	}
	a.devicesChanged(r.Context(), user, []id.DeviceID{dev})
	return httpx.OK(w, httpx.Empty)
}

type deleteDeviceReq struct {
	Auth *authDict `json:"auth"`
}

// deleteDevice serves DELETE /_matrix/client/v3/devices/{deviceId}
// (device_management.yaml), behind User-Interactive Authentication with the
// user's password. Deleting a device that is already gone succeeds, as the
// spec says.
func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	var req deleteDeviceReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	sess := session(r)
	dev := id.DeviceID(r.PathValue("deviceId"))
	uia, done, err := a.interactiveAuth(w, r, uiaCall{
		purpose: "delete_device " + dev.String(), user: sess.UserID, flows: passwordFlows, auth: req.Auth,
	})
	if err != nil || !done {
		return err
	}
	if err := a.users.DeleteDevices(r.Context(), sess.UserID, []id.DeviceID{dev}); err != nil {
		return err
	}
	a.devicesGone(r.Context(), sess.UserID, []id.DeviceID{dev})
	a.uia.finish(uia.id)
	return httpx.OK(w, httpx.Empty)
}

type deleteDevicesReq struct {
	Devices []id.DeviceID `json:"devices"`
	Auth    *authDict     `json:"auth"`
}

// deleteDevices serves POST /_matrix/client/v3/delete_devices
// (device_management.yaml), behind User-Interactive Authentication with the
// user's password.
func (a *API) deleteDevices(w http.ResponseWriter, r *http.Request) error {
	var req deleteDevicesReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Devices == nil {
		return mxerr.MissingParam.With("devices is required")
	}
	sess := session(r)
	uia, done, err := a.interactiveAuth(w, r, uiaCall{
		purpose: "delete_devices", user: sess.UserID, flows: passwordFlows, auth: req.Auth,
	})
	if err != nil || !done {
		return err
	}
	if err := a.users.DeleteDevices(r.Context(), sess.UserID, req.Devices); err != nil {
		return err
	}
	a.devicesGone(r.Context(), sess.UserID, req.Devices)
	a.uia.finish(uia.id)
	return httpx.OK(w, httpx.Empty)
}
