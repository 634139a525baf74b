import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { UserStatusEventSchema, UserStatusSchema } from '../gen/presence/admin/v1/admin_pb';
import { reactionTo, withStatus } from './live-statuses';

const alice = create(UserStatusSchema, { userId: 'a', username: 'alice', online: false });
const bob = create(UserStatusSchema, { userId: 'b', username: 'bob', online: false });
const aliceOnline = create(UserStatusSchema, { userId: 'a', username: 'alice', online: true });

describe('reactionTo', () => {
  it('applies a live change and refetches for the counts', () => {
    const event = create(UserStatusEventSchema, { status: aliceOnline });
    expect(reactionTo(event)).toEqual({ kind: 'apply', status: aliceOnline, refetch: true });
  });

  it('applies a snapshot event without refetching, and refetches once the snapshot is complete', () => {
    expect(reactionTo(create(UserStatusEventSchema, { status: aliceOnline, snapshot: true }))).toEqual({
      kind: 'apply',
      status: aliceOnline,
      refetch: false,
    });
    expect(reactionTo(create(UserStatusEventSchema, { snapshotComplete: true }))).toEqual({ kind: 'refetch' });
  });

  it('waits for the fresh snapshot after a resync marker', () => {
    expect(reactionTo(create(UserStatusEventSchema, { resync: true }))).toEqual({ kind: 'ignore' });
  });
});

describe('withStatus', () => {
  it('replaces the row of the same user only', () => {
    expect(withStatus([alice, bob], aliceOnline)).toEqual([aliceOnline, bob]);
  });

  it('leaves a page without that user untouched', () => {
    const rows = [bob];
    expect(withStatus(rows, aliceOnline)).toBe(rows);
  });
});
