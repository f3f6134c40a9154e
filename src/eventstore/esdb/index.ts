export { EsdbEventStore, type EsdbConnectOptions, type EsdbEventStoreOptions, type EsdbLogger } from './eventStore.js';
